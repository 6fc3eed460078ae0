"""Scoring: batch scoring with a bundle, entity history kept between batches."""
