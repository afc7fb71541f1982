from asrkit.cli import run

run()
