__version__ = "0.19.2.dev0+moelora.stub"
__version_tuple__ = (0, 19, 2, "dev0", "moelora.stub")
