"""Running a command line's ``main`` in a test and reading its one error line."""
from __future__ import annotations

#: a tiny training of train_controller.py: the paper preset (one update per env step), 40-update episodes
TINY = ["--preset", "paper", "--episode-length", "40", "--no-progress", "--checkpoint-every", "0",
        "--log-every", "5"]


def cli(main, argv, capsys) -> tuple[int, str]:
    """Run a CLI's ``main(argv)``; return (exit code, stderr)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def error_line(err: str) -> str:
    """The one ``error:`` line of ``err`` (no traceback, exactly one such line)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]
