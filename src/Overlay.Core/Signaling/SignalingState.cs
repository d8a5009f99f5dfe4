namespace Overlay.Signaling;

/// <summary>Connection state of a signaling channel.</summary>
public enum SignalingState
{
    /// <summary>Not yet connected.</summary>
    Disconnected,
    /// <summary>Connecting for the first time.</summary>
    Connecting,
    /// <summary>Connected and announced.</summary>
    Connected,
    /// <summary>The connection was lost; reconnecting with backoff.</summary>
    Reconnecting,
    /// <summary>Disposed.</summary>
    Closed,
}

/// <summary>A change of <see cref="ISignalingChannel.State"/>.</summary>
internal sealed class SignalingStateChangedEventArgs : EventArgs
{
    /// <summary>Creates the event.</summary>
    public SignalingStateChangedEventArgs(SignalingState state, Exception? error)
    {
        State = state;
        Error = error;
    }

    /// <summary>The new state.</summary>
    public SignalingState State { get; }

    /// <summary>The error that caused the change (a lost connection, a stream error, hostile input), if any.</summary>
    public Exception? Error { get; }
}
