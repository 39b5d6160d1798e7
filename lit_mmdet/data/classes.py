"""A built dataset's class names, as mmdet's ``tools/train.py`` takes them for the model
(``model.CLASSES = datasets[0].CLASSES``): through wrappers (``ConcatDataset`` and a codebase's own,
``RepeatDataset`` & co.), a string as one class name."""
from __future__ import annotations

from typing import Any, Optional

from ..plan.model import class_names

__all__ = ['dataset_classes']


def dataset_classes(dataset: Any) -> Optional[tuple[str, ...]]:
    """``dataset.CLASSES``, else its first wrapped dataset's (``datasets[0]`` / ``dataset``); None when none has any."""
    for _ in range(16):  # (wrappers a few deep)
        if dataset is None:
            return None
        classes = getattr(dataset, 'CLASSES', None)
        if classes:
            return class_names(classes)
        parts = getattr(dataset, 'datasets', None)
        dataset = parts[0] if parts else getattr(dataset, 'dataset', None)
    return None
