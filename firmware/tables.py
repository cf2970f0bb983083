"""The signed tables' loader (card_schema/tariff.py): fares.bin, deny.bin, deny_delta.bin verified
with the config key and put into the terminal (its table, deny files and versions). Imported at
boot and after an INSTALL changed a version (firmware/app.py load_tables), and forgotten after with
card_schema.tariff and card_schema.signed: a tap needs only card_schema.denylist.
"""

from errno import ENOENT

from micropython import const

from card_schema import signed, tariff

_DEFAULT_REPEAT = const(60)  # = card_schema.tariff_host.DEFAULT_REPEAT


def load(term):
    """(Re)load the tables into `term`; verify each; use only what verifies. What the terminal uses
    changes only once every file is read: an error while verifying that is neither OSError nor
    ValueError (a MemoryError in a fragmented heap), or an OSError other than ENOENT (a file that
    is there but cannot be read: a flash error) on a reload, leaves the tables in use as they were
    and raises (the main loop tries again on a later pass), never a terminal without its deny list.
    At boot there is nothing in use: an unreadable file is logged and reported as version 0 (the
    host installs it again)."""
    deny = []
    table = None
    deny_ver = 0
    tariff_ver = term.tariff_ver
    vers = {}
    key = term.config_key
    try:
        for kind in (signed.KIND_FARES, signed.KIND_DENY, signed.KIND_DENY_DELTA):
            name = signed.NAMES[kind] + ".bin"
            ver = signed.NAMES[kind] + "_ver"
            vers[ver] = 0
            try:
                if key is None:
                    open(name).close()  # OSError: none provisioned
                    raise ValueError("no config key to verify it")
                # verified where it lies: a deny list may be 800 KB
                v, f, n = tariff.load(key, name, kind, bytearray(512))
                if kind == signed.KIND_FARES:
                    with f:
                        table = tariff.fare_table(f.read(n))
                    tariff_ver = v
                elif v >= deny_ver:  # a delta older than the full list is stale
                    deny.append((f, (n - 4) // tariff.DENY_ENTRY))
                    deny_ver = v
                else:
                    f.close()
                vers[ver] = v
            except OSError as e:
                if e.errno != ENOENT:  # there, but unreadable: not "none provisioned"
                    if term._vers:  # () at boot, the versions in use after a load
                        raise  # a reload: what is in use stays
                    term.log_error(name, e)
                if kind == signed.KIND_FARES and "fare" in term.config:
                    # provisioned flat fare, no table yet: repeat window and concessions apply
                    table = {
                        "default": term.fare,
                        "repeat": int(term.config.get("repeat", _DEFAULT_REPEAT)),
                        # = card_schema.tariff_host.FLAT_CONC
                        "conc": term.config.get("conc", (100, 50, 30, 0)),
                    }
            except ValueError as e:
                term.log_error(name, e)
    except BaseException:
        for f, _ in deny:
            f.close()
        raise
    for f, _ in term.deny:
        f.close()
    term.deny = deny
    term.table = table
    term.deny_ver = deny_ver
    term.tariff_ver = tariff_ver
    info = term.info
    info.update(vers)
    term._vers = (info["fares_ver"], info["deny_ver"], info["deny_delta_ver"])
