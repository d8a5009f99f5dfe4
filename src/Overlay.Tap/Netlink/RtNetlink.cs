using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Overlay.Tap.Linux;

namespace Overlay.Tap.Netlink;

/// <summary>
/// Configures links and addresses through rtnetlink (RFC 3549, linux/rtnetlink.h) instead of shelling
/// out to ip(8): one NETLINK_ROUTE socket, one request at a time, each acknowledged.
/// </summary>
internal sealed unsafe class RtNetlink : IDisposable
{
    private const int AF_NETLINK = 16;
    private const int SOCK_RAW = 3;
    private const int SOCK_CLOEXEC = 0x80000;
    private const int NETLINK_ROUTE = 0;

    // linux/netlink.h
    private const ushort NLMSG_ERROR = 2;
    private const ushort NLM_F_REQUEST = 0x1;
    private const ushort NLM_F_ACK = 0x4;
    private const ushort NLM_F_EXCL = 0x200;
    private const ushort NLM_F_CREATE = 0x400;

    // linux/rtnetlink.h
    private const ushort RTM_SETLINK = 19;
    private const ushort RTM_NEWADDR = 20;

    // linux/if_link.h, linux/if_addr.h
    private const ushort IFLA_ADDRESS = 1;
    private const ushort IFLA_MTU = 4;
    private const ushort IFA_ADDRESS = 1;
    private const ushort IFA_LOCAL = 2;
    private const byte IFA_F_NODAD = 0x02;
    private const uint IFF_UP = 0x1;

    private const int HeaderLength = 16;     // struct nlmsghdr
    private const int IfInfoLength = 16;     // struct ifinfomsg
    private const int IfAddrLength = 8;      // struct ifaddrmsg

    private readonly int _fd;
    private uint _sequence;

    public RtNetlink()
    {
        _fd = LibC.Socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (_fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new TapDeviceException(TapError.SystemError, $"cannot open an rtnetlink socket: {LibC.Describe(errno)}", errno);
        }
    }

    /// <summary>Sets the link's MAC address.</summary>
    public void SetMacAddress(int index, ReadOnlySpan<byte> mac, string name)
    {
        Span<byte> m = stackalloc byte[256];
        var n = BeginLink(m, index, flags: 0, change: 0);
        n = PutAttribute(m, n, IFLA_ADDRESS, mac);
        Execute(m, n, $"set MAC of {name}", TapError.InvalidAddress);
    }

    /// <summary>Sets the link's MTU.</summary>
    public void SetMtu(int index, int mtu, string name)
    {
        Span<byte> m = stackalloc byte[256];
        var n = BeginLink(m, index, flags: 0, change: 0);
        Span<byte> value = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(value, (uint)mtu);
        n = PutAttribute(m, n, IFLA_MTU, value);
        Execute(m, n, $"set MTU {mtu} on {name}", TapError.InvalidMtu);
    }

    /// <summary>Brings the link up or down.</summary>
    public void SetUp(int index, bool up, string name)
    {
        Span<byte> m = stackalloc byte[256];
        var n = BeginLink(m, index, flags: up ? IFF_UP : 0, change: IFF_UP);
        Execute(m, n, $"set {name} {(up ? "up" : "down")}", TapError.SystemError);
    }

    /// <summary>Adds an IPv4 or IPv6 address (IPv6 without duplicate address detection, so it is usable at once).</summary>
    public void AddAddress(int index, InterfaceAddress address, string name)
    {
        Span<byte> m = stackalloc byte[256];
        var v6 = address.Address.AddressFamily == AddressFamily.InterNetworkV6;
        Span<byte> bytes = stackalloc byte[16];
        address.Address.TryWriteBytes(bytes, out var length);
        bytes = bytes[..length];

        var n = HeaderLength;
        var body = m.Slice(n, IfAddrLength);
        body.Clear();
        body[0] = v6 ? (byte)10 : (byte)2; // AF_INET6 / AF_INET on Linux
        body[1] = (byte)address.PrefixLength;
        body[2] = v6 ? IFA_F_NODAD : (byte)0;
        body[3] = 0; // RT_SCOPE_UNIVERSE
        BinaryPrimitives.WriteUInt32LittleEndian(body[4..], (uint)index);
        n += IfAddrLength;
        n = PutAttribute(m, n, IFA_LOCAL, bytes);
        n = PutAttribute(m, n, IFA_ADDRESS, bytes);
        WriteHeader(m, n, RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        Execute(m, n, $"add address {address} to {name}", TapError.InvalidAddress, headerWritten: true);
    }

    private static int BeginLink(Span<byte> m, int index, uint flags, uint change)
    {
        var body = m.Slice(HeaderLength, IfInfoLength);
        body.Clear();
        body[0] = 0; // AF_UNSPEC
        BinaryPrimitives.WriteInt32LittleEndian(body[4..], index);
        BinaryPrimitives.WriteUInt32LittleEndian(body[8..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(body[12..], change);
        return HeaderLength + IfInfoLength;
    }

    private static int PutAttribute(Span<byte> m, int offset, ushort type, ReadOnlySpan<byte> value)
    {
        var length = 4 + value.Length;
        BinaryPrimitives.WriteUInt16LittleEndian(m[offset..], (ushort)length);
        BinaryPrimitives.WriteUInt16LittleEndian(m[(offset + 2)..], type);
        value.CopyTo(m[(offset + 4)..]);
        var aligned = (length + 3) & ~3; // RTA_ALIGN
        m.Slice(offset + length, aligned - length).Clear();
        return offset + aligned;
    }

    private void WriteHeader(Span<byte> m, int length, ushort type, ushort flags)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(m, (uint)length);
        BinaryPrimitives.WriteUInt16LittleEndian(m[4..], type);
        BinaryPrimitives.WriteUInt16LittleEndian(m[6..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(m[8..], ++_sequence);
        BinaryPrimitives.WriteUInt32LittleEndian(m[12..], 0);
    }

    private void Execute(Span<byte> m, int length, string what, TapError reason, bool headerWritten = false)
    {
        if (!headerWritten) WriteHeader(m, length, RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK);
        var sequence = _sequence;
        fixed (byte* p = m)
        {
            if (LibC.Send(_fd, p, length, 0) != length)
            {
                var errno = Marshal.GetLastPInvokeError();
                throw new TapDeviceException(TapError.SystemError, $"cannot {what}: netlink send failed: {LibC.Describe(errno)}", errno);
            }
        }
        Span<byte> reply = stackalloc byte[4096];
        while (true)
        {
            nint received;
            fixed (byte* p = reply) received = LibC.Recv(_fd, p, reply.Length, 0);
            if (received < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == LibC.EINTR) continue;
                throw new TapDeviceException(TapError.SystemError, $"cannot {what}: netlink receive failed: {LibC.Describe(errno)}", errno);
            }
            var data = reply[..(int)received];
            while (data.Length >= HeaderLength)
            {
                var messageLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(data);
                var type = BinaryPrimitives.ReadUInt16LittleEndian(data[4..]);
                var seq = BinaryPrimitives.ReadUInt32LittleEndian(data[8..]);
                if (messageLength < HeaderLength || messageLength > data.Length) break;
                if (type == NLMSG_ERROR && seq == sequence && messageLength >= HeaderLength + 4)
                {
                    var error = -BinaryPrimitives.ReadInt32LittleEndian(data[HeaderLength..]);
                    if (error == 0) return; // the acknowledgement
                    var kind = error switch
                    {
                        LibC.EPERM or LibC.EACCES => TapError.PermissionDenied,
                        LibC.EEXIST when reason == TapError.InvalidAddress => TapError.InvalidAddress,
                        LibC.EINVAL or LibC.ERANGE or LibC.EADDRNOTAVAIL or LibC.EEXIST => reason,
                        _ => TapError.SystemError,
                    };
                    throw new TapDeviceException(kind, $"cannot {what}: {LibC.Describe(error)}", error);
                }
                data = data[((messageLength + 3) & ~3)..];
            }
        }
    }

    public void Dispose() => LibC.Close(_fd);

    /// <summary>The index of a link by name, or 0.</summary>
    public static int IndexOf(string name) => (int)LibC.IfNameToIndex(name);

}
