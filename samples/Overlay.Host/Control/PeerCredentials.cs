using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Overlay.Host.Control;

/// <summary>Who is at the other end of a Unix socket, as the kernel vouches for it (SO_PEERCRED, unix(7)).</summary>
internal static partial class PeerCredentials
{
    private const int SolSocket = 1;   // <asm-generic/socket.h>
    private const int SoPeerCred = 17; // <asm-generic/socket.h>: struct ucred { pid_t pid; uid_t uid; gid_t gid; }

    /// <summary>The connecting process's user ID at the time it connected.</summary>
    public static uint UserOf(Socket socket)
    {
        Span<byte> ucred = stackalloc byte[12];
        var length = socket.GetRawSocketOption(SolSocket, SoPeerCred, ucred);
        if (length < 12) throw new SocketException((int)SocketError.ProtocolNotSupported);
        return MemoryMarshal.Read<uint>(ucred[4..]); // the kernel writes it in the machine's own byte order
    }

    /// <summary>This process's effective user ID.</summary>
    public static uint Self => geteuid();

    [LibraryImport("libc")]
    private static partial uint geteuid();
}
