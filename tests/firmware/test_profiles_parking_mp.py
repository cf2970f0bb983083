"""The parking profile's tariff on the real MicroPython VM: steps, grace, daily cap, sessions in the
same and in another zone, a repeat tap at the meter that opened the session."""

import json
from harness import vm

RULE = {"grace": 10, "steps": [[60, 20000], [120, 50000]], "hourly": 30000, "cap": 200000}
TABLE = {"zones": {"1": RULE, "2": dict(RULE, cap=120000)}, "repeat": 60}
NOW = 1795000000
METER = 7001

# (name, minutes, expected Rial)
CHARGES = [
    ("at once", 0, 0),
    ("inside the grace", 10, 0),
    ("just after the grace", 11, 20000),
    ("first step's end", 60, 20000),
    ("second step", 61, 50000),
    ("second step's end", 120, 50000),
    ("one started hour more", 121, 80000),
    ("three hours", 180, 80000),
    ("three hours and a minute", 181, 110000),
    ("capped", 600, 200000),
    ("a whole day", 1440, 200000),
    ("a day and 30 minutes", 1470, 220000),
    ("two days and 5 hours", 2 * 1440 + 300, 540000),  # 2 caps + 50,000 + 3 hours
]

# (name, meter zone, card's newest record [kind, seconds ago, terminal, amount, profile, zone, flags]
#  or None, expected (amount, flags), expected duration)
OPEN, CLOSED = 2, 0
SESSIONS = [
    ("new card taps in", 1, None, [0, OPEN], 0),
    ("a bus ride is no session", 1, [1, 3600, 1001, 25000, 1, 0, 0], [0, OPEN], 0),
    ("a closed session: tap in", 1, [1, 3600, METER, 20000, 3, 1, CLOSED], [0, OPEN], 0),
    ("just tapped out here: repeat", 1, [1, 20, METER, 20000, 3, 1, CLOSED], [-1, 0], 0),
    ("just tapped out elsewhere: tap in", 1, [1, 20, 7002, 20000, 3, 1, CLOSED], [0, OPEN], 0),
    ("tap out after 95 min", 1, [1, 95 * 60, METER, 0, 3, 1, OPEN], [50000, 0], 95),
    ("tap out at another meter", 1, [1, 95 * 60, 7002, 0, 3, 1, OPEN], [50000, 0], 95),
    ("repeat tap at the meter", 1, [1, 20, METER, 0, 3, 1, OPEN], [-1, 0], 0),
    ("other zone: its cap", 1, [1, 30 * 60, 7100, 0, 3, 2, OPEN], [120000, 0], 30),
]

SCRIPT = vm.script("parking_cases")  # harness/mp/parking_cases.py


def test_parking_tariff_table_driven(mp_run, tmp_path):
    (tmp_path / "cases.json").write_text(json.dumps([TABLE, CHARGES, SESSIONS, NOW, METER]))
    p = mp_run(SCRIPT, tmp_path / "cases.json", check=True)
    got = {r[0]: r[1:] for r in map(json.loads, p.stdout.splitlines())}
    wrong = [(n, got[n], [want]) for n, _, want in CHARGES if got[n] != [want]]
    wrong += [(n, got[n], [w, d]) for n, _, _, w, d in SESSIONS if got[n] != [w, d]]
    assert not wrong, wrong


def test_other_zone_by_duration(mp_run, tmp_path):
    table = dict(TABLE, other_zone="duration")
    sessions = [("other zone by its rule", 1, [1, 95 * 60, 7100, 0, 3, 2, OPEN], [50000, 0], 95)]
    (tmp_path / "cases.json").write_text(json.dumps([table, [], sessions, NOW, METER]))
    p = mp_run(SCRIPT, tmp_path / "cases.json", check=True)
    assert json.loads(p.stdout) == ["other zone by its rule", [50000, 0], 95]
