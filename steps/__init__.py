"""The work of a book job: one module per containerised step, and the domain core they share.

Each step is a plain program, ``python -m steps.<name> …``: arguments in, store keys read,
store keys written, an exit code out (0 done, 3 permanent input error, anything else transient).
``steps`` never imports ``pipeline``.
"""
