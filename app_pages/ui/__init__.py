"""What the pages share, one job a module: state, feedback, inputs, sidebar, run_picker,
dataset_view, queue."""
