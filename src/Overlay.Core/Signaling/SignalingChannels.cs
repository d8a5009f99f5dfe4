using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Overlay.Signaling.InProcess;
using Overlay.Signaling.Xmpp;

namespace Overlay.Signaling;

/// <summary>
/// Creates the signaling channel a node's configuration asks for: XMPP (<see cref="XmppSignalingOptions"/>)
/// or an in-process hub (<see cref="InProcessSignalingOptions"/>, nodes given the same hub meet).
/// </summary>
internal static class SignalingChannels
{
    /// <summary>The roster group every node of an in-process hub joins: on a hub, every node sees every other.</summary>
    internal const string InProcessGroup = "nodes";

    /// <summary>
    /// Creates (does not connect) the channel for <paramref name="nodeId"/> serving <paramref name="overlays"/>, whose
    /// members are the contacts in <paramref name="overlayGroups"/>' roster groups (all contacts where none are named).
    /// </summary>
    public static SignalingChannelBase Create(SignalingOptions options, string nodeId, IReadOnlyList<string> overlays,
        ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null, IReadOnlyDictionary<string, IReadOnlyList<string>>? overlayGroups = null)
    {
        overlayGroups ??= new Dictionary<string, IReadOnlyList<string>>();
        ArgumentNullException.ThrowIfNull(options);
        switch (options)
        {
            case InProcessSignalingOptions inProcess:
                var hub = inProcess.Hub ?? new InProcessSignalingHub();
                hub.AddToGroup(InProcessGroup, nodeId);
                return hub.CreateChannel(new InProcessChannelOptions
                {
                    Account = nodeId, NodeId = nodeId, Overlays = overlays, OverlayGroups = overlayGroups, LoggerFactory = loggerFactory, TimeProvider = timeProvider,
                });
            case XmppSignalingOptions xmpp:
                return new XmppSignalingChannel(new XmppChannelOptions
                {
                    Jid = xmpp.Username,
                    Password = xmpp.AuthenticationMethod == XmppAuthenticationMethod.Password ? xmpp.Password : null,
                    Host = xmpp.HostAddress,
                    Port = xmpp.Port,
                    TrustedCaCertificatePath = xmpp.CaFile,
                    PinnedCertificateSha256 = xmpp.PinnedCertificateSha256,
                    ClientCertificate = xmpp.AuthenticationMethod == XmppAuthenticationMethod.X509 && xmpp.ClientCertificateFile is { } file
                        ? LoadClientCertificate(file) : null,
                    KeepaliveInterval = xmpp.PingInterval,
                    KeepaliveTimeout = xmpp.PingTimeout,
                    ConnectTimeout = xmpp.ConnectTimeout,
                    ReconnectMinDelay = xmpp.ReconnectMinDelay,
                    ReconnectMaxDelay = xmpp.ReconnectMaxDelay,
                    NodeId = nodeId,
                    Overlays = overlays,
                    OverlayGroups = overlayGroups,
                    LoggerFactory = loggerFactory,
                    TimeProvider = timeProvider,
                });
            default:
                throw new ArgumentException($"unsupported signaling options {options.GetType().Name}", nameof(options));
        }
    }

    /// <summary>Loads a PEM file holding the certificate and its private key, usable by SslStream on every platform.</summary>
    private static X509Certificate2 LoadClientCertificate(string pemFile)
    {
        using var pem = X509Certificate2.CreateFromPemFile(pemFile);
        return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
    }
}
