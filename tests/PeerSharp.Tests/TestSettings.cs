// TorchSharp's default random generator is process-wide. Tests seed it so that their random parameters and
// inputs are the same on every run; test classes running in parallel would interleave their draws and make
// the values (and any near-tie in a top-k) depend on scheduling. libtorch parallelises each op anyway.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
