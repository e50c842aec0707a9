"""`python -m sim_robot ...` (same as the `sim-robot` command)."""

from sim_robot.cli import main

main()
