"""What measures a run, beside the loss the train step reports: the classification report
(`classification`) and the classifier FID of generated images (`fid`). Each takes what it
needs as arguments (a compiled function, a state, a loader) and calls nothing back; the
recipes pick and run them."""
