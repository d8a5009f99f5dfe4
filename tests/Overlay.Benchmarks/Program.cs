using BenchmarkDotNet.Running;
using Overlay.Benchmarks.Links;

// Throughput runs that need real network namespaces are plain programs; the rest is BenchmarkDotNet.
if (args.Length > 0 && args[0] == "link-throughput") return await LinkThroughput.RunAsync(args);
if (args.Length > 0 && args[0] == "stack-throughput") return await Overlay.Benchmarks.Stack.StackThroughput.RunAsync(args);
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
