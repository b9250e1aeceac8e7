"""The typer CLI: the composition root (settings -> backend -> worker / output)."""
