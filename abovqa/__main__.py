"`python -m abovqa COMMAND ...`: the same as the `abovqa` console script (hand-written, not exported by nbdev)."
import sys
from abovqa.cli import main

sys.exit(main())
