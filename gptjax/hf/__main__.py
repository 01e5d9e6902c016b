"""`python -m gptjax.hf import|export ...`"""

import sys

from gptjax.hf import main

sys.exit(main())
