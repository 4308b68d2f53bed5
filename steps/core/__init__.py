"""The domain of a book job, light imports only: errors, book manifest, job record, analysis,
store, image codec, artifacts, notify, settings, faults."""
