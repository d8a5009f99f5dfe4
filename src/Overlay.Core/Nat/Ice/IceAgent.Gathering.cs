using System.Globalization;
using System.Net;
using System.Text;
using Overlay.Nat.Stun;
using Overlay.Nat.Turn;

namespace Overlay.Nat.Ice;

internal sealed partial class IceAgent
{
    /// <summary>
    /// Gathers server-reflexive candidates from every configured STUN server and a relayed candidate from every TURN
    /// server (RFC 8445 §5.1.1.2), all at once; each is announced through <see cref="CandidateGathered"/> as it comes, so
    /// a server that does not answer delays nobody but itself. Returns all local candidates.
    /// </summary>
    public async Task<IReadOnlyList<IceCandidate>> GatherAsync(CancellationToken cancellationToken = default)
    {
        var work = new List<Task>();
        foreach (var server in _options.StunServers) work.Add(GatherServerReflexiveAsync(server, cancellationToken));
        foreach (var slot in _relays) work.Add(GatherRelayOnceAsync(slot, cancellationToken));
        await Task.WhenAll(work).ConfigureAwait(false);
        return LocalCandidates;
    }

    /// <summary>One TURN server of the options: its client, and the relayed candidate once allocated.</summary>
    private sealed class RelaySlot(TurnServer server, int index)
    {
        public TurnServer Server { get; } = server;
        public int Index { get; } = index;
        public SemaphoreSlim Gate { get; } = new(1, 1);
        public TurnClient? Turn { get; set; }
        public IceCandidate? Candidate { get; set; }
    }

    private void GatherHostCandidates()
    {
        var hosts = HostCandidateGatherer.Gather(_options.ExcludedInterfaces, _options.UseIPv6 && _endpoint.Mux.DualStack);
        lock (_gate)
        {
            var index = 0;
            foreach (var (address, _) in hosts)
            {
                // RFC 8445 §5.1.2.1: distinct local preferences per host address, in interface order.
                var candidate = new IceCandidate(Foundation(IceCandidateType.Host, address, null),
                    IceCandidate.ComputePriority(IceCandidateType.Host, 65535 - index++), new IPEndPoint(address, LocalPort), IceCandidateType.Host);
                _local.Add(candidate);
                _hostBase.TryAdd(address.AddressFamily, candidate);
            }
        }
    }

    private async Task GatherServerReflexiveAsync(IPEndPoint server, CancellationToken ct)
    {
        var mapped = await _endpoint.DiscoverMappedAddressAsync(server, _options.ServerRetransmission, ct).ConfigureAwait(false);
        if (mapped is { } m) AddServerReflexive(m.ToEndPoint(), server.Address);
    }

    private void AddServerReflexive(IPEndPoint address, IPAddress server)
    {
        IceCandidate candidate;
        lock (_gate)
        {
            // RFC 8445 §5.1.3: a server-reflexive candidate equal to a host candidate is redundant.
            if (_local.Exists(c => c.Address.Equals(address))) return;
            _hostBase.TryGetValue(address.AddressFamily, out var hostBase);
            candidate = new IceCandidate(Foundation(IceCandidateType.ServerReflexive, hostBase?.Address.Address, server),
                IceCandidate.ComputePriority(IceCandidateType.ServerReflexive, 65535), address, IceCandidateType.ServerReflexive, hostBase?.Address);
            _local.Add(candidate);
        }
        CandidateGathered?.Invoke(candidate);
    }

    private async Task GatherRelayedAsync(RelaySlot slot, CancellationToken ct)
    {
        var server = slot.Server;
        var turn = slot.Turn ??= _endpoint.AttachTurn(server);
        if (!await turn.AllocateAsync(ct).ConfigureAwait(false) || turn.RelayedAddress is not { } relayed)
        {
            if (turn.IsStream)
            {
                // A stream socket that failed to connect is not reused: the next gathering makes a new one.
                _endpoint.DetachTurn(turn);
                slot.Turn = null;
                _ = turn.DisposeAsync().AsTask();
            }
            return;
        }
        // Over UDP the mapped address is this socket's server-reflexive one; over a stream it is the TCP connection's.
        var mapped = turn.MappedAddress?.ToEndPoint();
        if (mapped is not null && !turn.IsStream) AddServerReflexive(mapped, server.EndPoint.Address);
        IceCandidate candidate;
        lock (_gate)
        {
            // Relays over UDP first, then TCP, then TLS (RFC 8445 §5.1.2.1 leaves local preferences to the agent); in the
            // order the servers were given within each.
            var preference = server.Transport switch { TurnTransport.Udp => 65535, TurnTransport.Tcp => 32767, _ => 16383 } - slot.Index;
            candidate = new IceCandidate(Foundation(IceCandidateType.Relayed, mapped?.Address, server.EndPoint.Address, server.Transport),
                IceCandidate.ComputePriority(IceCandidateType.Relayed, preference), relayed.ToEndPoint(), IceCandidateType.Relayed, mapped);
            slot.Candidate = candidate;
            _local.Add(candidate);
            foreach (var remote in _remote) PairWithLocals(remote);
        }
        CandidateGathered?.Invoke(candidate);
    }

    /// <summary>One gathering at a time per server, so overlapping gatherings (restarts in quick succession) make one allocation.</summary>
    private async Task GatherRelayOnceAsync(RelaySlot slot, CancellationToken ct)
    {
        await slot.Gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (slot.Turn is { } turn && slot.Candidate is not null) await KeepOrReplaceRelayAsync(slot, turn, ct).ConfigureAwait(false);
            else await GatherRelayedAsync(slot, ct).ConfigureAwait(false);
        }
        finally
        {
            slot.Gate.Release();
        }
    }

    /// <summary>
    /// Gathering again (after a restart) keeps a relay allocation the server still refreshes. When this socket's NAT
    /// mapping has changed, the server knows the allocation only by the old 5-tuple and refuses the refresh (437
    /// Allocation Mismatch, RFC 8656 §7.3), so nothing relayed would reach this agent: the old relayed candidate is
    /// withdrawn and a new allocation made from the current mapping (over a stream: on a new connection).
    /// </summary>
    private async Task KeepOrReplaceRelayAsync(RelaySlot slot, TurnClient turn, CancellationToken ct)
    {
        if (await turn.RefreshAsync(turn.Options.Lifetime, ct).ConfigureAwait(false)) return;
        lock (_gate)
        {
            if (slot.Candidate is { } old)
            {
                _local.Remove(old);
                _pairs.RemoveAll(p => ReferenceEquals(p.Local, old));
                slot.Candidate = null;
            }
            _permissions.RemoveWhere(p => p.Turn == turn);
        }
        LogRelayLost(turn.RelayedAddress);
        _endpoint.DetachTurn(turn);
        slot.Turn = null;
        _ = turn.DisposeAsync().AsTask(); // asks the server to delete it; the server expires it otherwise
        await GatherRelayedAsync(slot, ct).ConfigureAwait(false);
    }

    /// <summary>RFC 8445 §5.1.1.3: same type, base address and server give the same foundation.</summary>
    private static string Foundation(IceCandidateType type, IPAddress? baseAddress, IPAddress? server, TurnTransport transport = TurnTransport.Udp) =>
        Crc32.Compute(Encoding.UTF8.GetBytes($"{type}|{baseAddress}|{server}|udp{(transport == TurnTransport.Udp ? "" : "|" + transport)}")).ToString(CultureInfo.InvariantCulture);

    /// <summary>Pairs a remote candidate with the socket base of its family and with each relay (caller holds the lock).</summary>
    private void PairWithLocals(IceCandidate remote)
    {
        if (_hostBase.TryGetValue(remote.Address.AddressFamily, out var host)) FindOrAddPair(host, remote);
        // A relay cannot reach a peer's private host address; sending there can also make a TURN server (coturn)
        // stop relaying on that allocation after the network-unreachable error, so such pairs are not formed.
        if (remote.Type == IceCandidateType.Host && IsPrivate(remote.Address.Address)) return;
        foreach (var slot in _relays)
        {
            if (slot.Candidate is not { } relay || slot.Turn is not { } turn || relay.Address.AddressFamily != remote.Address.AddressFamily) continue;
            FindOrAddPair(relay, remote, turn);
            EnsurePermission(turn, remote.Address);
        }
    }

    /// <summary>RFC 1918, RFC 6598 shared, link-local and unique-local addresses: not reachable from a relay on the internet.</summary>
    internal static bool IsPrivate(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        if (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6)
            return address.IsIPv6LinkLocal || address.IsIPv6UniqueLocal || address.IsIPv6SiteLocal;
        var b = address.GetAddressBytes();
        return b[0] == 10 || (b[0] == 172 && (b[1] & 0xF0) == 16) || (b[0] == 192 && b[1] == 168) ||
               (b[0] == 100 && (b[1] & 0xC0) == 64) || (b[0] == 169 && b[1] == 254);
    }

    private CandidatePair FindOrAddPair(IceCandidate local, IceCandidate remote, TurnClient? relay = null)
    {
        foreach (var p in _pairs)
            if (ReferenceEquals(p.Local, local) && p.Remote.Address.Equals(remote.Address)) return p;
        var pair = new CandidatePair(local, remote, _endpoint.Mux.ToSocketAddress(remote.Address), relay);
        _pairs.Add(pair);
        return pair;
    }

    private void EnsurePermission(TurnClient turn, IPEndPoint peer)
    {
        if (_permissions.Add((turn, peer.Address))) _ = turn.CreatePermissionAsync(new StunAddress(peer));
    }

    /// <summary>Installs permissions for <paramref name="peer"/> on every relay allocated (caller holds the lock).</summary>
    private void EnsurePermissions(IPEndPoint peer)
    {
        foreach (var slot in _relays)
            if (slot.Candidate is not null && slot.Turn is { } turn) EnsurePermission(turn, peer);
    }

    /// <summary>The relayed local candidate of <paramref name="turn"/>, or null (caller holds the lock).</summary>
    private IceCandidate? RelayCandidateOf(TurnClient turn)
    {
        foreach (var slot in _relays)
            if (slot.Turn == turn) return slot.Candidate;
        return null;
    }

    /// <summary>
    /// The selected pair goes through a relay over TCP or TLS: ask the STUN and UDP TURN servers again, and when UDP
    /// passes now (a server-reflexive or UDP-relayed candidate appears, and is trickled to the peer), check the direct
    /// and UDP-relayed pairs that failed before again. A better pair that succeeds is nominated, and the path moves to
    /// it while frames keep flowing over the stream until then.
    /// </summary>
    private async Task TryUpgradeAsync()
    {
        try
        {
            int before;
            lock (_gate) before = _local.Count(c => c.Type == IceCandidateType.ServerReflexive || (c.Type == IceCandidateType.Relayed && !IsStreamRelay(c)));
            var work = new List<Task>();
            foreach (var server in _options.StunServers) work.Add(GatherServerReflexiveAsync(server, CancellationToken.None));
            foreach (var slot in _relays)
                if (!slot.Server.IsStream && slot.Candidate is null) work.Add(GatherRelayOnceAsync(slot, CancellationToken.None));
            await Task.WhenAll(work).ConfigureAwait(false);
            lock (_gate)
            {
                var after = _local.Count(c => c.Type == IceCandidateType.ServerReflexive || (c.Type == IceCandidateType.Relayed && !IsStreamRelay(c)));
                if (after == before || State != IceState.Connected) return;
                foreach (var p in _pairs)
                    if (!p.OverStream && p.State == CandidatePairState.Failed) p.State = CandidatePairState.Waiting;
                LogUpgrade();
                TickSoon();
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
        {
            // closed meanwhile
        }
        finally
        {
            Volatile.Write(ref _upgrading, 0);
        }
    }

    private bool IsStreamRelay(IceCandidate candidate)
    {
        foreach (var slot in _relays)
            if (ReferenceEquals(slot.Candidate, candidate)) return slot.Server.IsStream;
        return false;
    }
}
