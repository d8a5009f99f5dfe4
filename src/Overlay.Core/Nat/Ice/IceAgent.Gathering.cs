using System.Globalization;
using System.Net;
using System.Text;
using Overlay.Nat.Stun;
using Overlay.Nat.Turn;

namespace Overlay.Nat.Ice;

internal sealed partial class IceAgent
{
    /// <summary>
    /// Gathers server-reflexive candidates from the configured STUN servers and a relayed candidate from the first TURN
    /// server (RFC 8445 §5.1.1.2); each is also announced through <see cref="CandidateGathered"/>. Returns all local candidates.
    /// Servers that do not answer are skipped.
    /// </summary>
    public async Task<IReadOnlyList<IceCandidate>> GatherAsync(CancellationToken cancellationToken = default)
    {
        var work = new List<Task>();
        foreach (var server in _options.StunServers) work.Add(GatherServerReflexiveAsync(server, cancellationToken));
        if (_options.TurnServers.Count > 0) work.Add(GatherRelayOnceAsync(cancellationToken));
        await Task.WhenAll(work).ConfigureAwait(false);
        return LocalCandidates;
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

    private async Task GatherRelayedAsync(TurnServer server, CancellationToken ct)
    {
        var turn = _endpoint.AttachTurn(server);
        if (!await turn.AllocateAsync(ct).ConfigureAwait(false) || turn.RelayedAddress is not { } relayed) return;
        var mapped = turn.MappedAddress?.ToEndPoint();
        if (mapped is not null) AddServerReflexive(mapped, server.EndPoint.Address);
        IceCandidate candidate;
        lock (_gate)
        {
            candidate = new IceCandidate(Foundation(IceCandidateType.Relayed, mapped?.Address, server.EndPoint.Address),
                IceCandidate.ComputePriority(IceCandidateType.Relayed, 65535), relayed.ToEndPoint(), IceCandidateType.Relayed, mapped);
            _relay = candidate;
            _local.Add(candidate);
            foreach (var remote in _remote) PairWithLocals(remote);
        }
        CandidateGathered?.Invoke(candidate);
    }

    /// <summary>One relay gathering at a time, so overlapping gatherings (restarts in quick succession) make one allocation.</summary>
    private async Task GatherRelayOnceAsync(CancellationToken ct)
    {
        await _relayGathering.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (_endpoint.Turn is { } turn) await KeepOrReplaceRelayAsync(turn, ct).ConfigureAwait(false);
            else await GatherRelayedAsync(_options.TurnServers[0], ct).ConfigureAwait(false);
        }
        finally
        {
            _relayGathering.Release();
        }
    }

    /// <summary>
    /// Gathering again (after a restart) keeps a relay allocation the server still refreshes. When this socket's NAT
    /// mapping has changed, the server knows the allocation only by the old 5-tuple and refuses the refresh (437
    /// Allocation Mismatch, RFC 8656 §7.3), so nothing relayed would reach this agent: the old relayed candidate is
    /// withdrawn and a new allocation made from the current mapping.
    /// </summary>
    private async Task KeepOrReplaceRelayAsync(TurnClient turn, CancellationToken ct)
    {
        if (await turn.RefreshAsync(turn.Options.Lifetime, ct).ConfigureAwait(false)) return;
        lock (_gate)
        {
            if (_relay is { } old)
            {
                _local.Remove(old);
                _pairs.RemoveAll(p => ReferenceEquals(p.Local, old));
                _relay = null;
            }
            _permissions.Clear();
        }
        LogRelayLost(turn.RelayedAddress);
        _ = turn.DisposeAsync().AsTask(); // asks the server to delete it; the server expires it otherwise
        await GatherRelayedAsync(turn.Options, ct).ConfigureAwait(false);
    }

    /// <summary>RFC 8445 §5.1.1.3: same type, base address and server give the same foundation.</summary>
    private static string Foundation(IceCandidateType type, IPAddress? baseAddress, IPAddress? server) =>
        Crc32.Compute(Encoding.UTF8.GetBytes($"{type}|{baseAddress}|{server}|udp")).ToString(CultureInfo.InvariantCulture);

    /// <summary>Pairs a remote candidate with the socket base of its family and with the relay (caller holds the lock).</summary>
    private void PairWithLocals(IceCandidate remote)
    {
        if (_hostBase.TryGetValue(remote.Address.AddressFamily, out var host)) FindOrAddPair(host, remote);
        // A relay cannot reach a peer's private host address; sending there can also make a TURN server (coturn)
        // stop relaying on that allocation after the network-unreachable error, so such pairs are not formed.
        if (_relay is { } relay && relay.Address.AddressFamily == remote.Address.AddressFamily &&
            !(remote.Type == IceCandidateType.Host && IsPrivate(remote.Address.Address)))
        {
            FindOrAddPair(relay, remote);
            EnsurePermission(remote.Address);
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

    private CandidatePair FindOrAddPair(IceCandidate local, IceCandidate remote)
    {
        foreach (var p in _pairs)
            if (ReferenceEquals(p.Local, local) && p.Remote.Address.Equals(remote.Address)) return p;
        var pair = new CandidatePair(local, remote, _endpoint.Mux.ToSocketAddress(remote.Address));
        _pairs.Add(pair);
        return pair;
    }

    private void EnsurePermission(IPEndPoint peer)
    {
        if (_endpoint.Turn is { } turn && _relay is not null && _permissions.Add(peer.Address))
            _ = turn.CreatePermissionAsync(new StunAddress(peer));
    }
}
