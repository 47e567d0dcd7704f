"""python -m miniautograd.gradcheck: gradient-check every op of the engine and print a table."""
import sys

from .cases import main

sys.exit(main())
