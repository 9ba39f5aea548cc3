"""`python -m labinterp.cli`: the command line."""

from labinterp.cli.main import main

main()
