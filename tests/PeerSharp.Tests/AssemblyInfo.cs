// Model initialisation draws from libtorch's global generator (seeded per run), and tests compare runs
// bit-exactly, so tests must not build models concurrently. Two cores gain little from parallel tests anyway.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
