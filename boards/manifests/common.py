# The firmware every terminal gets, whatever its platform (micropython-lib style manifest, exec'd by
# mpybuild.manifest). The platform manifests (esp32.py, unix.py) include this one and add their
# hardware adapter; a board directory's own manifest.py includes its platform's.

# every byte format of the card, the tap record and the sync (not the host-only modules)
package("card_schema", exclude=("*_host.py", "*_admin.py"))

# the terminal: boot, tap state machine, reader chip, journal, sync, config install, UI texts
for name in (
    "__init__",
    "app",
    "hal",
    "pn532",
    "journal",
    "tables",
    "start",
    "pending",
    "serialsync",
    "maint",
    "clock",
    "install",
    "store",
    "diag",
    "wifi",
    "ota",
    "keep",
    "otastate",
    "msg",
    "msg_en",
    "msg_fa",
):
    module(name + ".py", package="firmware")

# every fare profile: config.json picks one, and `tapkit flash --profile` may change it
from card_schema.profile_host import PROFILES  # noqa: E402

for name in PROFILES:
    module("profile_%s.py" % name, package="firmware")
