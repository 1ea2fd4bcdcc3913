"""The public surface is deliberate: __all__ is sorted and every name in it exists."""

import pnr


def test_all_is_sorted_and_importable():
    assert pnr.__all__ == sorted(pnr.__all__)
    for name in pnr.__all__:
        assert hasattr(pnr, name), name
    public = {
        n
        for n in vars(pnr)
        if (not n.startswith("_") and n[0].isupper()) or n in ("load_domain", "load_plan", "make_plan", "parse_domain")
    }
    modules = {
        "config",
        "exceptions",
        "plan",
        "signals",
        "engine",
        "probes",
        "run",
        "flows",
        "ops",
        "cli",
        "converge",
        "settings",
        "artifacts",
        "events",
        "serve",
        "watch",
    }
    assert public - modules <= set(pnr.__all__)
