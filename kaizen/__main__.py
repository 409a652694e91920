"""`python -m kaizen`: the same command line as the `kaizen` script."""

from kaizen.cli import main

main()
