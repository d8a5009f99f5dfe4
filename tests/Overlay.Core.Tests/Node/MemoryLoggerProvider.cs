using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Overlay.Core.Tests.Node;

/// <summary>Keeps every log line in memory, for failure messages.</summary>
internal sealed class MemoryLoggerProvider(string prefix) : ILoggerProvider, ILoggerFactory
{
    private static readonly long Start = Stopwatch.GetTimestamp();

    public static ConcurrentQueue<string> Lines { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(prefix, categoryName);

    public void AddProvider(ILoggerProvider provider) { }

    public void Dispose() { }

    private sealed class Logger(string prefix, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug && !category.Contains("Ice", StringComparison.Ordinal) && !category.Contains("Stun", StringComparison.Ordinal);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            Lines.Enqueue($"{Stopwatch.GetElapsedTime(Start).TotalMilliseconds,8:0} {prefix} {category.Split('.')[^1]}: {formatter(state, exception)}{(exception is null ? "" : " " + exception.Message)}");
        }
    }
}
