"""Training the head model and its diffusion priors."""
