"""The ``mitotype`` command line: one module per subcommand group."""
