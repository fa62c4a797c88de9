"""Running the compose sandbox for real: the container engine, its images and the compose tool."""
