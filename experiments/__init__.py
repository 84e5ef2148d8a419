"""One file per experiment: `get_config()` and a short `main(config, workdir)`."""
