"""``python -m local_stack``: the whole stack on this machine (see ``local_stack.stack``)."""

from local_stack.stack import main

main()
