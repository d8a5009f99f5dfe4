using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Overlay.Core.Tests.Nat;

/// <summary>Collects log lines from any thread so a failing test can print them.</summary>
internal sealed class ListLoggerFactory(string prefix) : ILoggerFactory
{
    public ConcurrentQueue<string> Lines { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void AddProvider(ILoggerProvider provider) { }

    public void Dispose() { }

    private sealed class Logger(ListLoggerFactory owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner.Lines.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} {owner._prefix} {formatter(state, exception)}");
    }

    private readonly string _prefix = prefix;
}
