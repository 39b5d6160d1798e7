"""The codebase's hooks: a mean teacher that follows the student, and its own evaluation hook."""
import torch
from mmcv.runner import HOOKS, Hook
from mmdet.core import EvalHook


@HOOKS.register_module()
class ToyMeanTeacher(Hook):
    """A teacher: an exponential moving average of the student's weights in ``teacher_*`` buffers of the
    detector (``runner.model.module``), updated after every iteration, its distance logged."""

    def __init__(self, momentum=0.1):
        self.momentum = momentum

    def before_run(self, runner):
        model = runner.model.module
        for name, param in model.named_parameters():
            buffer = 'teacher_' + name.replace('.', '_')
            if not hasattr(model, buffer):
                model.register_buffer(buffer, param.data.clone())

    def after_train_iter(self, runner):
        model = runner.model.module
        distance = 0.0
        with torch.no_grad():
            for name, param in model.named_parameters():
                teacher = getattr(model, 'teacher_' + name.replace('.', '_'))
                teacher.mul_(1 - self.momentum).add_(param.data, alpha=self.momentum)
                distance += float((teacher - param.data).abs().sum())
        runner.log_buffer.update({'teacher_distance': distance})


@HOOKS.register_module()
class ToyEvalHook(EvalHook):
    """mmdet's EvalHook with the metrics renamed ``toy_<metric>``: a codebase's own evaluation."""

    def evaluate(self, runner, results):
        eval_res = self.dataloader.dataset.evaluate(results, logger=runner.logger, **self.eval_kwargs)
        for name, val in eval_res.items():
            runner.log_buffer.output['toy_' + name] = val
        runner.log_buffer.ready = True
        return None
