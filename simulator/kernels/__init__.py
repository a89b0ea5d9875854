"""Each rule of the simulator written once, as numba functions both engines call (issue 25).

The SimPy engine (engine.py) keeps SimPy's processes and event order and takes its timing and decisions from these
kernels; the compiled engine (compiled.py) runs the same kernels in its event loop and in Lindley's recursion.
`links`: rate at a time, finish time over a rate trace, the planning bandwidth, a varying delay in FIFO order.
`stations`: a c-server FIFO station's bookkeeping and the dynamic batcher's dispatch. `decisions`: best-split's
predicted delay and choice, the EWMA estimate, the edge server assignment.
"""
