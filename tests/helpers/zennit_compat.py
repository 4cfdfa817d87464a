"""Importing Zennit in the test environment: it imports torchvision for its ResNet canonizers, and
PyPI's torchvision does not load beside the CPU torch we test with; Zennit only needs the two
block classes by name, so a stub module provides them."""

from __future__ import annotations

import sys
import types
from typing import Any

from torch import nn


def import_zennit() -> Any:
    if "torchvision" not in sys.modules:
        tv = types.ModuleType("torchvision")
        models = types.ModuleType("torchvision.models")
        resnet = types.ModuleType("torchvision.models.resnet")
        resnet.BasicBlock = type("BasicBlock", (nn.Module,), {})  # type: ignore[attr-defined]
        resnet.Bottleneck = type("Bottleneck", (nn.Module,), {})  # type: ignore[attr-defined]
        tv.models = models  # type: ignore[attr-defined]
        models.resnet = resnet  # type: ignore[attr-defined]
        sys.modules.update({"torchvision": tv, "torchvision.models": models, "torchvision.models.resnet": resnet})
    import zennit.attribution
    import zennit.canonizers
    import zennit.composites
    import zennit.layer
    import zennit.rules
    import zennit.types

    return zennit
