"""Zennit (the reference for the LRP rules) needs a torchvision stub to import; see
tests/helpers/zennit_compat.py."""

from tests.helpers.zennit_compat import import_zennit

import_zennit()
