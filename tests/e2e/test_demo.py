"""`tapkit demo`: the README's main job. The demo is data (host_tools/sim/demo.py) and the CLI renders
it; with --json the story goes to stderr and stdout carries the report and the cards' balances."""

from e2e_helpers import run_cli

from host_tools.sim import demo


def test_demo_json_every_card_agrees_with_the_ledger(capsys, tmp_path):
    rc, out, err = run_cli(capsys, "demo", "--dir", tmp_path / "run", "--json")
    assert rc == 0, err
    assert [c["card"] for c in out["cards"]] == [c[0] for c in demo.CARDS]
    assert all(c["agree"] for c in out["cards"]), out["cards"]
    # alice 3 rides, bahram 2 at half fare, cyrus (senior, 30%: 7,500) 1 charged and 1 refused;
    # every charge is confirmed by its commit answer (a CONFIRM record)
    assert [c["charged"] for c in out["cards"]] == [75000, 25000, 7500]
    assert [c["unconfirmed"] for c in out["cards"]] == [0, 0, 0]
    rep = out["report"]
    assert rep["revenue"] == 107500 and rep["unconfirmed"]["amount"] == 0 and rep["refused"] == 1
    assert rep["reconciliation"]["findings"] == []
    assert out["report"]["reconciliation"]["mac_chain_breaks"] == []
    for line in ("[1/5] issuer keys and cards", "[4/5] tapkit sync --port", "demo complete"):
        assert line in err, (line, err)
    assert "Traceback" not in err
