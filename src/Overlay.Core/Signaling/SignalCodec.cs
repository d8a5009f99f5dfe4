using System.Buffers;
using System.Text.Json;

namespace Overlay.Signaling;

/// <summary>Why an inbound payload was not decoded.</summary>
internal enum SignalDecodeError
{
    None,
    Malformed,
    UnknownType,
}

/// <summary>A decoded payload: who sent it, its correlation ID, and either a message or an announcement.</summary>
internal readonly record struct SignalEnvelope(
    string NodeId, string CorrelationId, SignalMessage? Message, IReadOnlyList<string>? AnnouncedOverlays);

/// <summary>
/// The wire format of signaling payloads: one JSON object, the text of one element
/// <c>&lt;signal xmlns="urn:overlay:signal:1"&gt;</c>. The namespace carries the major version;
/// the <c>v</c> field the minor revision. Receivers ignore fields they do not know (so revisions may add
/// fields), drop and count action types they do not know, and drop and count anything malformed.
/// </summary>
/// <remarks>
/// Fields: <c>v</c> (int), <c>type</c>, <c>node</c> (sender node ID), <c>cid</c> (correlation ID;
/// a response repeats its request's), <c>overlay</c>, and per type: <c>edge</c>, <c>accepted</c>,
/// <c>reason</c>, <c>link</c>, <c>ufrag</c>, <c>pwd</c>, <c>candidates</c> (array of RFC 8839 strings),
/// <c>candidate</c>, <c>fingerprint</c>, <c>mac</c>; the presence announcement has <c>overlays</c>.
/// </remarks>
internal static class SignalCodec
{
    public const string Namespace = "urn:overlay:signal:1";
    public const string ElementName = "signal";
    public const int Version = 1;

    // Bounds on what a peer may make us hold; real payloads are far below these.
    public const int MaxPayloadBytes = 32 * 1024;
    private const int MaxString = 1024;
    private const int MaxCandidates = 64;
    private const int MaxOverlays = 64;

    private const string TypeAnnounce = "announce";
    private const string TypeEdgeRequest = "edge-request";
    private const string TypeEdgeResponse = "edge-response";
    private const string TypeLinkOffer = "link-offer";
    private const string TypeLinkAnswer = "link-answer";
    private const string TypeLinkReject = "link-reject";
    private const string TypeLinkCandidate = "link-candidate";
    private const string TypeLinkTeardown = "link-teardown";

    public static bool IsRequest(SignalMessage m) => m is EdgeRequest or LinkOffer;

    public static bool IsResponse(SignalMessage m) => m is EdgeResponse or LinkAnswer or LinkReject;

    public static bool IsNotification(SignalMessage m) => m is LinkCandidate or LinkTeardown;

    public static string EncodeAnnounce(string nodeId, IEnumerable<string> overlays)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("v", Version);
            w.WriteString("type", TypeAnnounce);
            w.WriteString("node", nodeId);
            w.WriteStartArray("overlays");
            foreach (var o in overlays) w.WriteStringValue(o);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    public static string Encode(string nodeId, string correlationId, SignalMessage message)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("v", Version);
            w.WriteString("type", TypeOf(message));
            w.WriteString("node", nodeId);
            w.WriteString("cid", correlationId);
            w.WriteString("overlay", message.OverlayId);
            switch (message)
            {
                case EdgeRequest r:
                    w.WriteString("edge", r.EdgeType);
                    break;
                case EdgeResponse r:
                    w.WriteBoolean("accepted", r.Accepted);
                    w.WriteString("reason", r.Reason);
                    break;
                case LinkDescription d:
                    w.WriteString("link", d.LinkId);
                    w.WriteString("ufrag", d.IceUfrag);
                    w.WriteString("pwd", d.IcePassword);
                    w.WriteStartArray("candidates");
                    foreach (var c in d.Candidates) w.WriteStringValue(c);
                    w.WriteEndArray();
                    w.WriteString("fingerprint", d.Fingerprint);
                    w.WriteString("mac", d.Mac);
                    if (d is LinkOffer { EdgeType: { } edgeType }) w.WriteString("edge", edgeType);
                    break;
                case LinkReject r:
                    w.WriteString("link", r.LinkId);
                    w.WriteString("reason", r.Reason);
                    break;
                case LinkCandidate c:
                    w.WriteString("link", c.LinkId);
                    w.WriteString("candidate", c.Candidate);
                    break;
                case LinkTeardown t:
                    w.WriteString("link", t.LinkId);
                    w.WriteString("reason", t.Reason);
                    break;
            }
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static string TypeOf(SignalMessage m) => m switch
    {
        EdgeRequest => TypeEdgeRequest,
        EdgeResponse => TypeEdgeResponse,
        LinkOffer => TypeLinkOffer,
        LinkAnswer => TypeLinkAnswer,
        LinkReject => TypeLinkReject,
        LinkCandidate => TypeLinkCandidate,
        LinkTeardown => TypeLinkTeardown,
        _ => throw new ArgumentException($"unsupported message type {m.GetType().Name}", nameof(m)),
    };

    /// <summary>Decodes a payload; never throws for malformed input.</summary>
    public static SignalDecodeError TryDecode(string json, out SignalEnvelope envelope)
    {
        envelope = default;
        if (json.Length == 0 || System.Text.Encoding.UTF8.GetMaxByteCount(json.Length) > MaxPayloadBytes * 4) return SignalDecodeError.Malformed;
        JsonDocument doc;
        try
        {
            // JsonDocument reports malformed JSON only by exception; it is caught here, at the boundary.
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 4 });
        }
        catch (JsonException)
        {
            return SignalDecodeError.Malformed;
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return SignalDecodeError.Malformed;
            if (!root.TryGetProperty("v", out var v) || v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var version) || version < 1)
                return SignalDecodeError.Malformed;
            if (!TryString(root, "type", out var type) || !TryString(root, "node", out var node) || !Switching.NodeId.IsValid(node))
                return SignalDecodeError.Malformed;

            if (type == TypeAnnounce)
            {
                if (!TryStringArray(root, "overlays", MaxOverlays, out var overlays)) return SignalDecodeError.Malformed;
                envelope = new SignalEnvelope(node, "", null, overlays);
                return SignalDecodeError.None;
            }

            if (type is not (TypeEdgeRequest or TypeEdgeResponse or TypeLinkOffer or TypeLinkAnswer or TypeLinkReject or TypeLinkCandidate or TypeLinkTeardown))
                return SignalDecodeError.UnknownType;
            if (!TryString(root, "cid", out var cid) || cid.Length == 0 || !TryString(root, "overlay", out var overlay) || overlay.Length == 0)
                return SignalDecodeError.Malformed;

            SignalMessage? message = null;
            switch (type)
            {
                case TypeEdgeRequest:
                    if (TryString(root, "edge", out var edge)) message = new EdgeRequest(overlay, edge);
                    break;
                case TypeEdgeResponse:
                    if (root.TryGetProperty("accepted", out var acc) && acc.ValueKind is JsonValueKind.True or JsonValueKind.False)
                        message = new EdgeResponse(overlay, acc.GetBoolean(), OptionalString(root, "reason"));
                    break;
                case TypeLinkOffer:
                case TypeLinkAnswer:
                    if (TryString(root, "link", out var link) && link.Length > 0
                        && TryString(root, "ufrag", out var ufrag) && TryString(root, "pwd", out var pwd)
                        && TryStringArray(root, "candidates", MaxCandidates, out var candidates)
                        && TryString(root, "fingerprint", out var fp) && TryString(root, "mac", out var mac))
                    {
                        message = type == TypeLinkOffer
                            ? new LinkOffer(overlay, link, ufrag, pwd, candidates, fp, mac) { EdgeType = TryString(root, "edge", out var offerEdge) ? offerEdge : null }
                            : new LinkAnswer(overlay, link, ufrag, pwd, candidates, fp, mac);
                    }
                    break;
                case TypeLinkReject:
                    if (TryString(root, "link", out var rl)) message = new LinkReject(overlay, rl, OptionalString(root, "reason"));
                    break;
                case TypeLinkCandidate:
                    if (TryString(root, "link", out var cl) && TryString(root, "candidate", out var cand) && cand.Length > 0)
                        message = new LinkCandidate(overlay, cl, cand);
                    break;
                case TypeLinkTeardown:
                    if (TryString(root, "link", out var tl)) message = new LinkTeardown(overlay, tl, OptionalString(root, "reason"));
                    break;
            }
            if (message is null) return SignalDecodeError.Malformed;
            envelope = new SignalEnvelope(node, cid, message, null);
            return SignalDecodeError.None;
        }
    }

    private static bool TryString(JsonElement root, string name, out string value)
    {
        value = "";
        if (!root.TryGetProperty(name, out var e) || e.ValueKind != JsonValueKind.String) return false;
        value = e.GetString() ?? "";
        return value.Length <= MaxString;
    }

    private static string OptionalString(JsonElement root, string name) => TryString(root, name, out var s) ? s : "";

    private static bool TryStringArray(JsonElement root, string name, int max, out IReadOnlyList<string> values)
    {
        values = [];
        if (!root.TryGetProperty(name, out var e) || e.ValueKind != JsonValueKind.Array) return false;
        var count = e.GetArrayLength();
        if (count > max) return false;
        var list = new string[count];
        var i = 0;
        foreach (var item in e.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String) return false;
            var s = item.GetString() ?? "";
            if (s.Length > MaxString) return false;
            list[i++] = s;
        }
        values = list;
        return true;
    }
}
