using System.Net;
using BenchmarkDotNet.Attributes;
using Overlay.Nat.Stun;

namespace Overlay.Benchmarks.Nat;

/// <summary>Cost of one ICE connectivity check message: parse + verify, and serialize + protect (target: 0 B allocated).</summary>
[MemoryDiagnoser]
public class StunBenchmarks
{
    private readonly byte[] _key = StunCredentials.ShortTermKey("VOkJxbRl1RmTxUk/WvJxBt");
    private readonly byte[] _buffer = new byte[256];
    private readonly byte[] _username = "remoteufrag:localufrag"u8.ToArray();
    private readonly StunAddress _mapped = new(IPEndPoint.Parse("[2001:db8::42]:40000"));
    private readonly TransactionId _transaction = TransactionId.NewRandom();
    private byte[] _request = [];

    [GlobalSetup]
    public void Setup() => _request = SerializeCheck() is var n ? _buffer.AsSpan(0, n).ToArray() : [];

    [Benchmark]
    public int SerializeCheck()
    {
        var w = new StunWriter(_buffer, StunMethod.Binding, StunClass.Request, _transaction);
        w.AddBytes(StunAttributeType.Username, _username);
        w.AddUInt32(StunAttributeType.Priority, 0x6e0001ff);
        w.AddUInt64(StunAttributeType.IceControlling, 0x932ff9b151263b36);
        w.AddFlag(StunAttributeType.UseCandidate);
        w.AddMessageIntegrity(_key);
        w.AddFingerprint();
        return w.Length;
    }

    [Benchmark]
    public int SerializeResponse()
    {
        var w = new StunWriter(_buffer, StunMethod.Binding, StunClass.SuccessResponse, _transaction);
        w.AddXorAddress(StunAttributeType.XorMappedAddress, _mapped);
        w.AddMessageIntegrity(_key);
        w.AddFingerprint();
        return w.Length;
    }

    [Benchmark]
    public uint ParseAndVerifyCheck()
    {
        if (!StunReader.TryParse(_request, out var r) || !r.VerifyFingerprint() || !r.VerifyMessageIntegrity(_key)) return 0;
        r.TryGetUInt32(StunAttributeType.Priority, out var priority);
        return priority + (r.HasAttribute(StunAttributeType.UseCandidate) ? 1u : 0u);
    }
}
