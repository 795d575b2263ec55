"""Sub-commands of the ``relumilp`` CLI; each module defines ``register(subparsers)``."""
