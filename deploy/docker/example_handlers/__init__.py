"""Example handler package for deploy/docker/worker.Dockerfile: the code a user's worker image
adds on top of the jobq image. Replace it with your own package."""
