"""N worker processes: launched without the user's main module, kept between runs, typed messages both ways."""
