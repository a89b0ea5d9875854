"""Each rule of the simulator written once, as numba functions both engines call (issue 25).

The SimPy engine (engine.py) keeps SimPy's processes and event order and takes its timing and decisions from these
kernels; the compiled engine (compiled.py) runs the same kernels in its event loop and in Lindley's recursion.
`links`: rate at a time, finish time over a rate trace, the planning bandwidth, a varying delay in FIFO order.
`stations`: a c-server FIFO station's bookkeeping and the dynamic batcher's dispatch. `decisions`: best-split's
predicted delay and choice, the EWMA estimate, the edge server assignment. The SimPy engine runs the scalar
kernels as the Python functions they are written as (`.py_func`: the same code) and the rest through
`python_entry`, since numba's per-call dispatch from Python would cost more than the rules.
"""

from __future__ import annotations

from typing import Any, Callable

import numba


def python_entry(kernel: Any, *example: Any) -> Callable:
    """`kernel` compiled for arguments typed as `example`, callable from Python without numba's per-call type
    dispatch (with structured records that dispatch costs 10-50 us a call, the call itself under 1 us): for call
    sites whose argument types never change (arrays of the same dtype and layout, Python floats and ints)."""
    signature = tuple(numba.typeof(a) for a in example)
    kernel.compile(signature)
    return kernel.get_overload(signature)
