namespace Overlay.Signaling;

/// <summary>A snapshot of a signaling channel's counters.</summary>
/// <param name="Accepted">Inbound requests and notifications handed to the engine.</param>
/// <param name="ResponsesMatched">Inbound responses matched to a pending request.</param>
/// <param name="DroppedNotInRoster">Inbound messages from senders outside the roster.</param>
/// <param name="DroppedUnservedOverlay">Inbound messages for an overlay this node does not serve.</param>
/// <param name="DroppedUnknownType">Inbound messages with an action type this version does not know.</param>
/// <param name="DroppedMalformed">Inbound payloads that failed to parse or validate.</param>
/// <param name="DroppedSpoofedNodeId">Inbound messages whose node ID differs from the one the sender announced.</param>
/// <param name="DroppedUnknownPeer">Inbound messages from a roster member that has not announced itself for that overlay.</param>
/// <param name="DroppedUnmatchedResponse">Responses with no pending request (late, duplicate or forged).</param>
/// <param name="DroppedQueueFull">Inbound messages dropped because the engine did not keep up.</param>
/// <param name="RequestsTimedOut">Outbound requests that got no response in time.</param>
/// <param name="DroppedNotInOverlayGroup">Announcements and messages for an overlay from a roster contact outside that overlay's roster groups.</param>
/// <param name="DroppedNodeIdClaimed">Announcements claiming a node ID another account holds, or a second node of one account in an overlay.</param>
internal sealed record SignalingCounters(
    long Accepted,
    long ResponsesMatched,
    long DroppedNotInRoster,
    long DroppedUnservedOverlay,
    long DroppedUnknownType,
    long DroppedMalformed,
    long DroppedSpoofedNodeId,
    long DroppedUnknownPeer,
    long DroppedUnmatchedResponse,
    long DroppedQueueFull,
    long RequestsTimedOut,
    long DroppedNotInOverlayGroup,
    long DroppedNodeIdClaimed)
{
    /// <summary>Sum of every drop counter.</summary>
    public long Dropped => DroppedNotInRoster + DroppedUnservedOverlay + DroppedUnknownType + DroppedMalformed
        + DroppedSpoofedNodeId + DroppedUnknownPeer + DroppedUnmatchedResponse + DroppedQueueFull + DroppedNotInOverlayGroup + DroppedNodeIdClaimed;
}
