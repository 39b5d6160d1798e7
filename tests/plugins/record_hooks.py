"""A codebase's own mmcv hook, registered in mmcv's HOOKS and named by a config's custom_imports:
it records every hook point mmcv's runners call, with the runner's counters and learning rate, and
puts a value into ``runner.log_buffer`` after each training iteration."""
from mmcv.runner import HOOKS, Hook

#: (tag, point, epoch, iter, inner_iter, lr of the first param group), in call order
CALLS: list = []

POINTS = ('before_run', 'after_run', 'before_epoch', 'after_epoch', 'before_train_epoch', 'after_train_epoch',
          'before_train_iter', 'after_train_iter', 'before_val_epoch', 'after_val_epoch', 'before_val_iter',
          'after_val_iter')


@HOOKS.register_module()
class RecordPoints(Hook):
    def __init__(self, tag: str, log_value: bool = False) -> None:
        self.tag = tag
        self.log_value = log_value


def _recorder(point):
    def record(self, runner):
        CALLS.append((self.tag, point, runner.epoch, runner.iter, runner.inner_iter,
                      round(runner.current_lr()[0], 12)))
        if point == 'after_train_iter' and self.log_value:
            runner.log_buffer.update({'hook_value': 2.0 * runner.iter})
    return record


for _point in POINTS:
    setattr(RecordPoints, _point, _recorder(_point))
