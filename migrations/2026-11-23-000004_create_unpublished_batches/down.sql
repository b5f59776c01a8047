DROP TABLE unpublished_batches;
