"""A small research codebase in the style of mmdet 2.x repositories, loaded only through a config's
``custom_imports = dict(imports=['tests.plugins.toy_codebase'])``: its own detector subclass and head,
an optimizer constructor, a dataset wrapper, a pipeline transform, a mean-teacher (EMA) hook and an
evaluation hook of its own (``evaluation=dict(type='ToyEvalHook', ...)``, built with the validation
loader as semi-supervised codebases' train scripts build theirs)."""
from .datasets import ToyJitter, ToyRepeat  # noqa: F401
from .hooks import ToyEvalHook, ToyMeanTeacher  # noqa: F401
from .models import ToyOptimizerConstructor, ToySOLO, ToySOLOHead  # noqa: F401
