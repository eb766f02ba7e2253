from data_scripts.utils.cli import dispatch

COMMANDS = {"echo": ("tests_cli_echo_module", "print args")}


def test_dispatch_runs_the_module_main(monkeypatch, capsys):
    import sys
    import types

    mod = types.ModuleType("tests_cli_echo_module")
    mod.main = lambda argv: print("got", argv) or 3
    monkeypatch.setitem(sys.modules, "tests_cli_echo_module", mod)
    assert dispatch("usage", COMMANDS, ["echo", "a", "--b"]) == 3
    assert capsys.readouterr().out == "got ['a', '--b']\n"


def test_dispatch_usage_and_errors(capsys):
    assert dispatch("usage text", COMMANDS, []) == 2
    assert "usage text" in capsys.readouterr().out
    assert dispatch("usage text", COMMANDS, ["--help"]) == 0
    assert dispatch("usage text", COMMANDS, ["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
