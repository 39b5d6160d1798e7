"""The machine a benchmark ran on, as every results file names it."""
import os
import platform

__all__ = ['describe']


def describe() -> str:
    """``host, N CPUs (model), arch``."""
    model = ''
    try:
        with open('/proc/cpuinfo') as f:
            model = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), '')
    except OSError:
        pass
    return f"{platform.node()}, {os.cpu_count()} CPUs{f' ({model})' if model else ''}, {platform.machine()}"
