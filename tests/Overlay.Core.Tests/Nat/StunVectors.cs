using System.Text;

namespace Overlay.Core.Tests.Nat;

/// <summary>The sample messages of RFC 5769 §2 (test data, published for interoperability checks).</summary>
internal static class StunVectors
{
    public const string ShortTermPassword = "VOkJxbRl1RmTxUk/WvJxBt";
    public const string ShortTermUsername = "evtj:h6vY";

    /// <summary>§2.1 Sample Request (Binding with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME, MI, FINGERPRINT).</summary>
    public static byte[] Request => Convert.FromHexString(
        "000100582112a442b7e7a701bc34d686fa87dfae" +
        "802200105354554e207465737420636c69656e74" +
        "002400046e0001ff" +
        "80290008932ff9b151263b36" +
        "000600096576746a3a68367659202020" +
        "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2" +
        "80280004e57a3bcf");

    /// <summary>§2.2 Sample IPv4 Response: 192.0.2.1:32853.</summary>
    public static byte[] ResponseIPv4 => Convert.FromHexString(
        "0101003c2112a442b7e7a701bc34d686fa87dfae" +
        "8022000b7465737420766563746f7220" +
        "002000080001a147e112a643" +
        "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7" +
        "80280004c07d4c96");

    /// <summary>§2.3 Sample IPv6 Response: [2001:db8:1234:5678:11:2233:4455:6677]:32853.</summary>
    public static byte[] ResponseIPv6 => Convert.FromHexString(
        "010100482112a442b7e7a701bc34d686fa87dfae" +
        "8022000b7465737420766563746f7220" +
        "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9" +
        "00080014a382954e4be67bf11784c97c8292c275bfe3ed41" +
        "80280004c8fb0b4c");

    public const string LongTermUsername = "\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9";
    public const string LongTermPassword = "TheMatrIX"; // after SASLprep of "The\u00ADM\u00AAtr\u2168"
    public const string LongTermNonce = "f//499k954d6OL34oL9FSTvy64sA";
    public const string LongTermRealm = "example.org";

    /// <summary>§2.4 Sample Request with Long-Term Authentication.</summary>
    public static byte[] LongTermRequest => Convert.FromHexString(
        "000100602112a44278ad3433c6ad72c029da412e" +
        "00060012" + Convert.ToHexString(Encoding.UTF8.GetBytes(LongTermUsername)) + "0000" +
        "0015001c" + Convert.ToHexString(Encoding.ASCII.GetBytes(LongTermNonce)) +
        "0014000b" + Convert.ToHexString(Encoding.ASCII.GetBytes(LongTermRealm)) + "00" +
        "00080014f67024656dd64a3e02b8e0712e85c9a28ca89666");
}
