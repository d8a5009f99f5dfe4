using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using Overlay.Stack.Internal;
using static Overlay.Stack.Tcp.TcpSequence;

namespace Overlay.Stack.Tcp;

/// <summary>
/// One TCP connection (RFC 9293), owned by its stack and used under the stack's lock from every thread: segments from
/// the network, the application's reads and writes, and timers. Data lives in two rings indexed by sequence number
/// (byte <c>s</c> at <c>s &amp; mask</c>): the send ring holds what is unacknowledged and unsent, the receive ring what
/// is unread plus out-of-order data at its place inside the window, so reassembly needs no memory of its own.
/// </summary>
internal sealed class TcpConnection
{
    private const long InitialRto = 1_000_000;   // µs, RFC 6298 §2.1
    private const long MinRto = 200_000;         // µs; RFC 6298 §2.4 says 1 s, Linux and this stack use 200 ms (§2.4 allows less)
    private const long MaxRto = 60_000_000;      // µs, RFC 6298 §2.5
    private const long DelayedAck = 40_000;      // µs; RFC 9293 §3.8.6.3 allows up to 500 ms, Linux uses 40 ms
    private const long FinWait2Timeout = 60_000_000;
    private const int MaxRetries = 12;
    private const int MaxSynRetries = 5;
    private const int MaxSynAckRetries = 4;
    private const int MaxOutOfOrder = 16;
    private const int MaxSacked = 8;

    private readonly UserspaceStack _stack;
    private readonly AsyncSignal _readable;
    private readonly AsyncSignal _writable;
    private readonly AsyncSignal _connected;

    // Send side (RFC 9293 §3.3.1)
    private uint _iss;
    private uint _sndUna;
    private uint _sndNxt;
    private uint _sndMax;
    private uint _sendTail;          // end of the application's data in the send ring
    private uint _sndWl1;
    private uint _sndWl2;
    private long _sndWnd;            // the peer's window in bytes, scale applied
    private int _sndScale;
    private int _rcvScale;
    private int _peerMss = 536;      // RFC 9293 §3.7.1 default when the SYN names none
    private bool _sackPermitted;
    private bool _peerOfferedScale;
    private byte[] _sendRing = [];
    private bool _writesCompleted;
    private uint _finSeq;
    private bool _finSent;

    // Congestion control: NewReno (RFC 5681, RFC 6582), with SACK (RFC 2018) to pick what to resend.
    private long _cwnd;
    private long _ssthresh = long.MaxValue;
    private long _bytesAckedInAvoidance;
    private int _dupAcks;
    private bool _inRecovery;
    private uint _recover;
    private uint _retransmitNext;
    private readonly uint[] _sacked = new uint[2 * MaxSacked];  // sorted, disjoint [start, end) blocks above _sndUna
    private int _sackedCount;

    // Round-trip time (RFC 6298), one timed segment at a time (Karn's algorithm)
    private bool _timing;
    private uint _timedSeq;
    private long _timedAt;
    private long _srtt = -1;
    private long _rttvar;
    private long _rto = InitialRto;
    private int _retries;

    // Timers (µs; long.MaxValue when off)
    private long _rtoDeadline = long.MaxValue;
    private long _delayedAckDeadline = long.MaxValue;
    private long _persistDeadline = long.MaxValue;
    private long _persistBackoff;
    private long _closeDeadline = long.MaxValue;  // TIME_WAIT, or FIN_WAIT_2 of a connection the application let go of

    // Receive side
    private uint _irs;
    private uint _readSeq;           // the next byte the application reads
    private byte[] _receiveRing = [];
    private int _receiveCapacity;
    private readonly uint[] _outOfOrder = new uint[2 * MaxOutOfOrder]; // sorted, disjoint [start, end) beyond _rcvNxt
    private int _outOfOrderCount;
    private bool _outOfOrderFin;     // a FIN came beyond a gap: it is processed when the gap below it is filled
    private uint _outOfOrderFinSeq;  // its sequence number (the end of the data it came with)
    private int _unackedSegments;
    private bool _ackNow;
    private bool _queuedForAck;
    private uint _lastAdvertisedRight;
    private bool _finReceived;
    private Exception? _error;
    private bool _released;          // the application closed its stream

    public TcpConnection(UserspaceStack stack, TcpKey key, UInt128 local, ulong peerMac)
    {
        _stack = stack;
        Key = key;
        Local = local;
        PeerMac = peerMac;
        _readable = new AsyncSignal(stack.Gate);
        _writable = new AsyncSignal(stack.Gate);
        _connected = new AsyncSignal(stack.Gate);
        _receiveCapacity = stack.Options.ReceiveBufferSize;
        while (_rcvScale < 14 && (65535L << _rcvScale) < _receiveCapacity) _rcvScale++;
    }

    public TcpKey Key { get; }

    public object StackGate => _stack.Gate;

    public UInt128 Local { get; }

    public ulong PeerMac { get; }

    public TcpState State { get; private set; }

    public OverlayTcpListener? Listener { get; init; }

    public uint RcvNxt { get; private set; }

    public long NextDeadline => Math.Min(Math.Min(_rtoDeadline, _delayedAckDeadline), Math.Min(_persistDeadline, _closeDeadline));

    private int Mss => Math.Min(_peerMss, _stack.MaxSegmentFor(Key.Remote));

    private int SendBuffered => (int)(_sendTail - _sndUna);

    private int Readable => (int)(RcvNxt - _readSeq) - (_finReceived ? 1 : 0);

    // ---- opening ----

    public void OpenActive(long now)
    {
        State = TcpState.SynSent;
        StartSending(now);
    }

    public void OpenPassive(ref TcpSegment syn, long now)
    {
        State = TcpState.SynReceived;
        _irs = syn.Seq;
        RcvNxt = syn.Seq + 1;
        _readSeq = RcvNxt;
        TakeSynOptions(ref syn);
        _sndWnd = syn.Window; // never scaled in a SYN (RFC 7323 §2.2)
        StartSending(now);
    }

    /// <summary>Picks the initial sequence number and sends the SYN (or SYN-ACK).</summary>
    private void StartSending(long now)
    {
        _iss = RandomSequence();
        _recover = _iss;
        _sndUna = _iss;
        _sndNxt = _iss + 1;
        _sndMax = _sndNxt;
        _sendTail = _iss + 1;
        SendSyn(now);
    }

    /// <summary>An initial sequence number that cannot be guessed (RFC 9293 §3.4.1, RFC 6528's goal).</summary>
    private static uint RandomSequence()
    {
        Span<byte> bytes = stackalloc byte[4];
        RandomNumberGenerator.Fill(bytes);
        return BinaryPrimitives.ReadUInt32LittleEndian(bytes);
    }

    private void TakeSynOptions(ref TcpSegment syn)
    {
        if (syn.Mss > 0) _peerMss = Math.Max(syn.Mss, 64);
        else if (!Ip.Addresses.IsV4(Key.Remote)) _peerMss = 1220; // RFC 8200's minimum MTU less headers
        _peerOfferedScale = syn.WindowScale >= 0;
        if (_peerOfferedScale) _sndScale = syn.WindowScale;
        else _rcvScale = 0; // both sides or neither (RFC 7323 §1.3)
        _sackPermitted = syn.SackPermitted;
    }

    private void SendSyn(long now)
    {
        var flags = State == TcpState.SynSent ? TcpFlags.Syn : TcpFlags.Syn | TcpFlags.Ack;
        _stack.SendSegment(this, _iss, flags, 0);
        ArmRto(now);
    }

    private void Establish(long now)
    {
        if (State == TcpState.SynReceived) _stack.LeftHalfOpen();
        State = TcpState.Established;
        _sndUna = _iss + 1;
        var capacity = 1;
        while (capacity < _stack.Options.SendBufferSize) capacity <<= 1;
        _sendRing = GC.AllocateUninitializedArray<byte>(capacity);
        var receive = 1;
        while (receive < _receiveCapacity) receive <<= 1;
        _receiveRing = GC.AllocateUninitializedArray<byte>(receive);
        _cwnd = Math.Min(10L * Mss, Math.Max(2L * Mss, 14600)); // RFC 6928's initial window
        _retries = 0;
        _rtoDeadline = long.MaxValue;
        Interlocked.Increment(ref _stack.Statistics.ConnectionsOpenedValue);
        _ = now;
    }

    public ValueTask WaitConnected(CancellationToken cancellationToken)
    {
        if (State != TcpState.SynSent) return _error is null ? ValueTask.CompletedTask : ValueTask.FromException(_error);
        return _connected.Arm(cancellationToken);
    }

    // ---- segments from the network (RFC 9293 §3.10.7) ----

    public void OnSegment(ref TcpSegment segment, long now)
    {
        if (State == TcpState.SynSent)
        {
            OnSegmentSynSent(ref segment, now);
            return;
        }
        if (State == TcpState.Closed) return;

        // 1. Is it in the window?
        var window = ReceiveWindow();
        var length = segment.SequenceLength;
        bool acceptable;
        if (length == 0) acceptable = window == 0 ? segment.Seq == RcvNxt : Le(RcvNxt, segment.Seq) && Lt(segment.Seq, RcvNxt + (uint)window);
        else acceptable = window > 0 && (InReceiveWindow(segment.Seq, window) || InReceiveWindow(segment.Seq + (uint)length - 1, window));
        if (!acceptable)
        {
            // A zero window still takes acknowledgments of the next expected sequence (RFC 9293 §3.10.7.4).
            if (!segment.Rst && window == 0 && segment.Seq == RcvNxt && segment.HasAck && !segment.Syn)
            {
                segment.Payload = default;
                segment.Flags &= ~TcpFlags.Fin;
            }
            else
            {
                _stack.Statistics.Drop(StackDropReason.TcpOutOfWindow);
                if (!segment.Rst) SendAck();
                return;
            }
        }

        // 2. Reset: only at exactly the next sequence; inside the window it is answered with an ACK (RFC 5961 §3.2).
        if (segment.Rst)
        {
            if (segment.Seq == RcvNxt)
                Abort(sendReset: false, State is TcpState.SynReceived ? null : new SocketException((int)SocketError.ConnectionReset));
            else SendAck();
            return;
        }

        // 3. A SYN in a synchronized state: a challenge ACK (RFC 5961 §4.2); a retransmitted SYN gets our SYN-ACK again.
        if (segment.Syn)
        {
            if (State == TcpState.SynReceived && segment.Seq == _irs) SendSyn(now);
            else SendAck();
            return;
        }

        // 4. Every other segment carries an ACK.
        if (!segment.HasAck)
        {
            _stack.Statistics.Drop(StackDropReason.TcpOutOfWindow);
            return;
        }

        if (State == TcpState.SynReceived)
        {
            if (Lt(segment.Ack, _iss + 1) || Gt(segment.Ack, _sndMax))
            {
                _stack.Statistics.Drop(StackDropReason.TcpOutOfWindow);
                _stack.SendReset(PeerMac, Local, Key.Remote, Key.LocalPort, Key.RemotePort, segment.Ack, 0, TcpFlags.Rst);
                return;
            }
            Establish(now);
            _sndWnd = (long)segment.Window << _sndScale;
            _sndWl1 = segment.Seq;
            _sndWl2 = segment.Ack;
            if (Listener is null || !Listener.Enqueue(this))
            {
                _stack.Statistics.Drop(StackDropReason.TcpAcceptQueueFull);
                Abort(sendReset: true);
                return;
            }
        }

        if (Gt(segment.Ack, _sndMax))
        {
            // It acknowledges something not yet sent (RFC 9293 §3.10.7.4): ACK and drop.
            _stack.Statistics.Drop(StackDropReason.TcpOutOfWindow);
            SendAck();
            return;
        }
        if (Ge(segment.Ack, _sndUna)) OnAck(ref segment, now);
        if (State == TcpState.Closed) return;

        // 5. Data, and 6. FIN (RFC 9293 §3.10.7.4, "seventh" and "eighth").
        var finInOrder = false;
        if (segment.Payload.Length > 0 || segment.Fin)
        {
            if (State is TcpState.Established or TcpState.FinWait1 or TcpState.FinWait2) finInOrder = OnData(ref segment);
            else if (State == TcpState.TimeWait && segment.Fin)
            {
                _closeDeadline = now + (long)_stack.Options.TimeWait.TotalMicroseconds;
                SendAck();
            }
        }
        if (finInOrder) OnFin(now);
        Output(now);
    }

    private bool InReceiveWindow(uint seq, int window) => Le(RcvNxt, seq) && Lt(seq, RcvNxt + (uint)window);

    private void OnSegmentSynSent(ref TcpSegment segment, long now)
    {
        if (segment.HasAck && (Le(segment.Ack, _iss) || Gt(segment.Ack, _sndMax)))
        {
            if (!segment.Rst) _stack.SendReset(PeerMac, Local, Key.Remote, Key.LocalPort, Key.RemotePort, segment.Ack, 0, TcpFlags.Rst);
            return;
        }
        if (segment.Rst)
        {
            if (segment.HasAck) Abort(sendReset: false, new SocketException((int)SocketError.ConnectionRefused));
            return;
        }
        if (!segment.Syn || !segment.HasAck) return; // simultaneous open is not supported: the peer's SYN is ignored
        _irs = segment.Seq;
        RcvNxt = segment.Seq + 1;
        _readSeq = RcvNxt;
        TakeSynOptions(ref segment);
        Establish(now);
        _sndWnd = (long)segment.Window << _sndScale;
        _sndWl1 = segment.Seq;
        _sndWl2 = segment.Ack;
        _connected.Set();
        SendAck();
        Output(now);
    }

    private void OnAck(ref TcpSegment segment, long now)
    {
        var ack = segment.Ack;
        var acked = ack - _sndUna;
        var window = (long)segment.Window << _sndScale;
        var outstanding = _sndMax != _sndUna;
        var sackedBefore = SackedBytes();
        if (_sackPermitted && segment.SackCount > 0) TakeSack(ref segment);
        var newlySacked = SackedBytes() > sackedBefore;
        if (acked > 0)
        {
            var finAcked = _finSent && Gt(ack, _finSeq);
            var dataAcked = (long)acked - (finAcked ? 1 : 0);
            _sndUna = ack;
            if (Lt(_sndNxt, _sndUna)) _sndNxt = _sndUna;
            DropSackedBelow(_sndUna);
            if (_timing && Gt(ack, _timedSeq)) SampleRtt(now - _timedAt);
            _retries = 0;
            _persistBackoff = 0;
            _rtoDeadline = _sndUna == _sndMax ? long.MaxValue : now + _rto;
            if (_rtoDeadline != long.MaxValue) _stack.ScheduleTimer(_rtoDeadline);
            OnNewAck(dataAcked, ack, now);
            _writable.Set();
            if (finAcked)
            {
                switch (State)
                {
                    case TcpState.FinWait1:
                        State = TcpState.FinWait2;
                        if (_released) SetCloseDeadline(now + FinWait2Timeout);
                        break;
                    case TcpState.Closing:
                        EnterTimeWait(now);
                        break;
                    case TcpState.LastAck:
                        Abort(sendReset: false);
                        return;
                }
            }
        }
        else if (outstanding && (newlySacked || (segment.Payload.Length == 0 && !segment.Fin && window == _sndWnd)))
        {
            // A duplicate: the same acknowledgment with no data and the same window (RFC 5681 §2), or one that SACKs
            // more (RFC 6675 §5: a receiver that grows its window as it goes would otherwise never send a duplicate).
            OnDuplicateAck(now);
        }
        // Window update (RFC 9293 §3.10.7.4): only from a segment no older than the last one that set it.
        if (Lt(_sndWl1, segment.Seq) || (_sndWl1 == segment.Seq && Le(_sndWl2, ack)))
        {
            _sndWnd = window;
            _sndWl1 = segment.Seq;
            _sndWl2 = ack;
            if (window > 0) _persistDeadline = long.MaxValue;
        }
    }

    private void OnNewAck(long acked, uint ack, long now)
    {
        _dupAcks = 0;
        if (_inRecovery)
        {
            if (Ge(ack, _recover))
            {
                // Full acknowledgment (RFC 6582 §3.2 step 3): deflate the window.
                _inRecovery = false;
                _cwnd = Math.Min(_ssthresh, Math.Max(_sndMax - _sndUna, Mss) + Mss);
            }
            else
            {
                // Partial acknowledgment (step 4): resend the next hole, deflate by what was acknowledged.
                if (Lt(_retransmitNext, _sndUna)) _retransmitNext = _sndUna;
                RetransmitHole(now);
                _cwnd = Math.Max(_cwnd - acked + (acked >= Mss ? Mss : 0), Mss);
            }
            return;
        }
        // Slow start (RFC 5681 §3.1) counting bytes acknowledged (RFC 3465) without its L limit, as Linux does: a kernel
        // behind a TAP with offload sees merged segments and acknowledges dozens at once.
        if (_cwnd < _ssthresh) _cwnd += acked;
        else
        {
            _bytesAckedInAvoidance += acked;  // congestion avoidance: one MSS per window acknowledged
            if (_bytesAckedInAvoidance >= _cwnd)
            {
                _bytesAckedInAvoidance -= _cwnd;
                _cwnd += Mss;
            }
        }
        _cwnd = Math.Min(_cwnd, 64L * 1024 * 1024);
    }

    private void OnDuplicateAck(long now)
    {
        _dupAcks++;
        // Three duplicates, or more than three segments' worth SACKed above the first hole (RFC 6675 §5 (a)).
        if ((_dupAcks >= 3 || SackedBytes() > 3L * Mss) && !_inRecovery && Gt(_sndUna, _recover - 1))
        {
            // Fast retransmit (RFC 5681 §3.2, RFC 6582 §3.2 step 2).
            Interlocked.Increment(ref _stack.Statistics.FastRetransmitsValue);
            _ssthresh = Math.Max((_sndMax - _sndUna) / 2, 2L * Mss);
            _recover = _sndMax;
            _inRecovery = true;
            _retransmitNext = _sndUna;
            RetransmitHole(now);
            _cwnd = _ssthresh + 3L * Mss;
        }
        else if (_inRecovery)
        {
            _cwnd += Mss;
            // With SACK, each further duplicate may name another hole: resend it too.
            if (_sackedCount > 0) RetransmitHole(now);
        }
    }

    /// <summary>Resends one segment at the first byte at or after the resend pointer that the peer has not SACKed.</summary>
    private void RetransmitHole(long now)
    {
        var seq = TcpSequence.Max(_retransmitNext, _sndUna);
        for (var i = 0; i < _sackedCount; i++)
            if (Le(_sacked[2 * i], seq) && Lt(seq, _sacked[2 * i + 1])) seq = _sacked[2 * i + 1];
        var limit = _sndMax;
        for (var i = 0; i < _sackedCount; i++)
            if (Gt(_sacked[2 * i], seq))
            {
                limit = _sacked[2 * i];
                break;
            }
        if (_sackedCount > 0 && !Lt(seq, _sacked[2 * (_sackedCount - 1) + 1]) && seq != _sndUna) return; // no hole below the highest SACK
        var dataEnd = _finSent ? _finSeq : _sendTail;
        var length = (int)Math.Min(Math.Min(limit - seq, dataEnd - seq), MaxPayload());
        if (length > 0 && Lt(seq, dataEnd))
        {
            _stack.SendSegment(this, seq, TcpFlags.Ack | TcpFlags.Psh, length);
            Interlocked.Increment(ref _stack.Statistics.RetransmitsValue);
            _retransmitNext = seq + (uint)length;
        }
        else if (_finSent && seq == _finSeq)
        {
            _stack.SendSegment(this, _finSeq, TcpFlags.Fin | TcpFlags.Ack, 0);
            Interlocked.Increment(ref _stack.Statistics.RetransmitsValue);
            _retransmitNext = _finSeq + 1;
        }
        _timing = false;
        _rtoDeadline = now + _rto;
        _stack.ScheduleTimer(_rtoDeadline);
    }

    private long SackedBytes()
    {
        long total = 0;
        for (var i = 0; i < _sackedCount; i++) total += _sacked[2 * i + 1] - _sacked[2 * i];
        return total;
    }

    private void TakeSack(ref TcpSegment segment)
    {
        for (var b = 0; b < segment.SackCount; b++)
        {
            var start = segment.Sack[2 * b];
            var end = segment.Sack[2 * b + 1];
            if (!Lt(start, end) || Le(end, _sndUna) || Gt(end, _sndMax)) continue; // RFC 2018 §3: ignore nonsense blocks
            if (Lt(start, _sndUna)) start = _sndUna;
            InsertRange(_sacked, ref _sackedCount, MaxSacked, start, end);
        }
    }

    private void DropSackedBelow(uint seq)
    {
        var kept = 0;
        for (var i = 0; i < _sackedCount; i++)
        {
            var start = _sacked[2 * i];
            var end = _sacked[2 * i + 1];
            if (Le(end, seq)) continue;
            _sacked[2 * kept] = Lt(start, seq) ? seq : start;
            _sacked[2 * kept + 1] = end;
            kept++;
        }
        _sackedCount = kept;
    }

    /// <summary>Adds [start, end) to a sorted list of disjoint ranges, merging; false when it is full and nothing merged.</summary>
    private static bool InsertRange(uint[] ranges, ref int count, int capacity, uint start, uint end)
    {
        var i = 0;
        while (i < count && Lt(ranges[2 * i + 1], start)) i++;
        if (i < count && Le(ranges[2 * i], end))
        {
            // Overlaps or touches range i: grow it, then swallow the ranges it now reaches.
            if (Lt(start, ranges[2 * i])) ranges[2 * i] = start;
            if (Gt(end, ranges[2 * i + 1])) ranges[2 * i + 1] = end;
            var j = i + 1;
            while (j < count && Le(ranges[2 * j], ranges[2 * i + 1]))
            {
                if (Gt(ranges[2 * j + 1], ranges[2 * i + 1])) ranges[2 * i + 1] = ranges[2 * j + 1];
                j++;
            }
            var removed = j - i - 1;
            if (removed > 0)
            {
                Array.Copy(ranges, 2 * j, ranges, 2 * (i + 1), 2 * (count - j));
                count -= removed;
            }
            return true;
        }
        if (count == capacity) return false;
        Array.Copy(ranges, 2 * i, ranges, 2 * (i + 1), 2 * (count - i));
        ranges[2 * i] = start;
        ranges[2 * i + 1] = end;
        count++;
        return true;
    }

    private void SampleRtt(long sample)
    {
        // RFC 6298 §2.2-2.3, α = 1/8, β = 1/4, K = 4, G = 1 ms.
        sample = Math.Max(sample, 1);
        if (_srtt < 0)
        {
            _srtt = sample;
            _rttvar = sample / 2;
        }
        else
        {
            _rttvar = (3 * _rttvar + Math.Abs(_srtt - sample)) / 4;
            _srtt = (7 * _srtt + sample) / 8;
        }
        _rto = Math.Clamp(_srtt + Math.Max(1000, 4 * _rttvar), MinRto, MaxRto);
        _timing = false;
    }

    /// <summary>Puts the payload in the receive ring; true when a FIN follows the data in order.</summary>
    private bool OnData(ref TcpSegment segment)
    {
        var seq = segment.Seq;
        var payload = segment.Payload;
        var fin = segment.Fin;
        if (_finReceived) return false;
        // Trim what was already received, and what lies beyond the window (RFC 9293 §3.10.7.4).
        if (Lt(seq, RcvNxt))
        {
            var skip = (int)(RcvNxt - seq);
            if (skip > payload.Length)
            {
                payload = default;
                fin = false; // the FIN too was received before
            }
            else payload = payload[skip..];
            seq = RcvNxt;
        }
        var right = _readSeq + (uint)_receiveCapacity;
        if (Gt(seq + (uint)payload.Length, right))
        {
            payload = payload[..(int)Math.Max(0, (long)(int)(right - seq))];
            fin = false;
        }
        if (payload.Length == 0 && !fin)
        {
            _ackNow = true; // a duplicate: tell the peer where we are
            QueueAck();
            return false;
        }
        if (seq == RcvNxt)
        {
            Store(seq, payload);
            RcvNxt = seq + (uint)payload.Length;
            var filledGap = _outOfOrderCount > 0;
            while (_outOfOrderCount > 0 && Le(_outOfOrder[0], RcvNxt))
            {
                if (Gt(_outOfOrder[1], RcvNxt)) RcvNxt = _outOfOrder[1];
                Array.Copy(_outOfOrder, 2, _outOfOrder, 0, 2 * (_outOfOrderCount - 1));
                _outOfOrderCount--;
            }
            if (payload.Length > 0) _readable.Set();
            _unackedSegments++;
            if (filledGap) _ackNow = true; // RFC 5681 §4.2: ACK at once when a gap is filled
            QueueAck();
            if (fin && _outOfOrderCount == 0 && RcvNxt == seq + (uint)payload.Length) return true;
            // A FIN that came ahead of the data now filled in is in order at last (RFC 9293 §3.10.7.4: a segment
            // held for later is processed, FIN included, once it is next in sequence).
            return _outOfOrderFin && _outOfOrderCount == 0 && RcvNxt == _outOfOrderFinSeq;
        }
        // Out of order: at its place in the ring, remembered as a range; an immediate duplicate ACK (RFC 5681 §4.2).
        var kept = true;
        if (payload.Length > 0)
        {
            kept = InsertRange(_outOfOrder, ref _outOfOrderCount, MaxOutOfOrder, seq, seq + (uint)payload.Length);
            if (kept) Store(seq, payload);
            else _stack.Statistics.Drop(StackDropReason.TcpReassemblyFull);
        }
        // Its FIN too is kept, or the stream would end only when the peer resends it, a retransmission timeout later,
        // and meanwhile look open (an HTTP client would reuse a connection the server has closed, and get a reset).
        if (fin && kept)
        {
            _outOfOrderFin = true;
            _outOfOrderFinSeq = seq + (uint)payload.Length;
        }
        _ackNow = true;
        QueueAck();
        return false;
    }

    private void Store(uint seq, ReadOnlySpan<byte> data)
    {
        if (data.Length == 0 || _released) return;
        var mask = _receiveRing.Length - 1;
        var index = (int)(seq & (uint)mask);
        var first = Math.Min(data.Length, _receiveRing.Length - index);
        data[..first].CopyTo(_receiveRing.AsSpan(index));
        if (first < data.Length) data[first..].CopyTo(_receiveRing);
    }

    private void OnFin(long now)
    {
        RcvNxt++;
        _finReceived = true;
        _outOfOrderFin = false;
        _ackNow = true;
        QueueAck();
        _readable.Set();
        switch (State)
        {
            case TcpState.Established:
                State = TcpState.CloseWait;
                break;
            case TcpState.FinWait1:
                // Our FIN not yet acknowledged (else we would be in FIN_WAIT_2): simultaneous close.
                State = TcpState.Closing;
                break;
            case TcpState.FinWait2:
                EnterTimeWait(now);
                break;
        }
    }

    private void EnterTimeWait(long now)
    {
        State = TcpState.TimeWait;
        _rtoDeadline = long.MaxValue;
        _persistDeadline = long.MaxValue;
        SetCloseDeadline(now + (long)_stack.Options.TimeWait.TotalMicroseconds);
    }

    private void SetCloseDeadline(long deadline)
    {
        _closeDeadline = deadline;
        _stack.ScheduleTimer(deadline);
    }

    private void QueueAck()
    {
        if (_queuedForAck) return;
        _queuedForAck = true;
        _stack.AckAtBurstEnd(this);
    }

    /// <summary>End of a burst of frames: ACK now if two segments or more wait for it (RFC 9293 §3.8.6.3), else soon.</summary>
    public void OnBurstEnd()
    {
        _queuedForAck = false;
        if (State == TcpState.Closed) return;
        if (_ackNow || _unackedSegments >= 2) SendAck();
        else if (_unackedSegments == 1 && _delayedAckDeadline == long.MaxValue)
        {
            _delayedAckDeadline = _stack.NowMicroseconds() + DelayedAck;
            _stack.ScheduleTimer(_delayedAckDeadline);
        }
    }

    // ---- sending ----

    private int MaxPayload() => Mss - (_sackPermitted && _outOfOrderCount > 0 ? 4 + 8 * Math.Min(_outOfOrderCount, 3) : 0);

    /// <summary>Sends what the windows allow: new data, then the FIN once all data is out; an ACK if one is owed.</summary>
    public void Output(long now)
    {
        if (State is not (TcpState.Established or TcpState.CloseWait or TcpState.FinWait1 or TcpState.Closing or TcpState.LastAck))
        {
            if (_ackNow) SendAck();
            return;
        }
        while (true)
        {
            var unsent = (long)(int)(_sendTail - _sndNxt);
            if (unsent <= 0) break;
            var inFlight = (long)(_sndNxt - _sndUna);
            var usable = Math.Min(_sndWnd, _cwnd) - inFlight;
            var max = MaxPayload();
            var length = (int)Math.Min(Math.Min(unsent, max), usable);
            if (length <= 0) break;
            // Sender-side silly window avoidance (RFC 9293 §3.8.6.2.1): no small segment while data is in flight.
            if (length < max && length < unsent && inFlight > 0) break;
            var seq = _sndNxt;
            var isNew = seq == _sndMax;
            _stack.SendSegment(this, seq, length == unsent ? TcpFlags.Ack | TcpFlags.Psh : TcpFlags.Ack, length);
            if (!isNew) Interlocked.Increment(ref _stack.Statistics.RetransmitsValue);
            else if (!_timing)
            {
                _timing = true;
                _timedSeq = seq;
                _timedAt = now;
            }
            _sndNxt = seq + (uint)length;
            if (Gt(_sndNxt, _sndMax)) _sndMax = _sndNxt;
            ArmRto(now);
        }
        if (_writesCompleted && _sndNxt == _sendTail && (!_finSent || _sndNxt == _finSeq))
        {
            _finSeq = _sendTail;
            var first = !_finSent;
            _finSent = true;
            _stack.SendSegment(this, _finSeq, TcpFlags.Fin | TcpFlags.Ack, 0);
            _sndNxt = _finSeq + 1;
            if (Gt(_sndNxt, _sndMax)) _sndMax = _sndNxt;
            ArmRto(now);
            if (first)
            {
                if (State == TcpState.Established) State = TcpState.FinWait1;
                else if (State == TcpState.CloseWait) State = TcpState.LastAck;
            }
        }
        // Zero window with data waiting and nothing in flight: probe it (RFC 9293 §3.8.6.1).
        if (_sndWnd == 0 && _sendTail != _sndNxt && _sndNxt == _sndUna && _persistDeadline == long.MaxValue)
        {
            _rtoDeadline = long.MaxValue;
            _persistBackoff = Math.Max(_persistBackoff, _rto);
            _persistDeadline = now + _persistBackoff;
            _stack.ScheduleTimer(_persistDeadline);
        }
        if (_ackNow) SendAck();
    }

    private void ArmRto(long now)
    {
        if (_rtoDeadline != long.MaxValue) return;
        _rtoDeadline = now + _rto;
        _stack.ScheduleTimer(_rtoDeadline);
    }

    private void SendAck() => _stack.SendSegment(this, _sndNxt, TcpFlags.Ack, 0);

    /// <summary>Called by the stack for every segment sent: it carries our acknowledgment, so none is owed any longer.</summary>
    public ushort AdvertiseWindow(TcpFlags flags)
    {
        var window = ReceiveWindow();
        if ((flags & TcpFlags.Ack) != 0)
        {
            _ackNow = false;
            _unackedSegments = 0;
            _delayedAckDeadline = long.MaxValue;
        }
        if ((flags & TcpFlags.Syn) != 0) return (ushort)Math.Min(window, 65535);
        var scaled = (ushort)Math.Min(window >> _rcvScale, 65535);
        _lastAdvertisedRight = RcvNxt + ((uint)scaled << _rcvScale);
        return scaled;
    }

    /// <summary>Free room in the receive ring: the window (its right edge never moves left, as reads only add room).</summary>
    private int ReceiveWindow()
    {
        if (_released || State is TcpState.SynReceived or TcpState.SynSent) return _receiveCapacity;
        return _receiveCapacity - (int)(RcvNxt - _readSeq) + (_finReceived ? 1 : 0);
    }

    public int WriteOptions(Span<byte> options, TcpFlags flags)
    {
        if ((flags & TcpFlags.Syn) != 0)
        {
            // MSS, NOP + window scale, NOP NOP + SACK permitted: 12 bytes.
            options[0] = 2;
            options[1] = 4;
            BinaryPrimitives.WriteUInt16BigEndian(options[2..], (ushort)_stack.MaxSegmentFor(Key.Remote));
            var length = 4;
            if (State == TcpState.SynSent || _peerOfferedScale)
            {
                options[4] = 1;
                options[5] = 3;
                options[6] = 3;
                options[7] = (byte)_rcvScale;
                length = 8;
            }
            if (State == TcpState.SynSent || _sackPermitted)
            {
                options[length] = 1;
                options[length + 1] = 1;
                options[length + 2] = 4;
                options[length + 3] = 2;
                length += 4;
            }
            return length;
        }
        if (!_sackPermitted || _outOfOrderCount == 0 || (flags & TcpFlags.Ack) == 0) return 0;
        // SACK blocks (RFC 2018 §4): the received out-of-order ranges, up to three.
        var blocks = Math.Min(_outOfOrderCount, 3);
        options[0] = 1;
        options[1] = 1;
        options[2] = 5;
        options[3] = (byte)(2 + 8 * blocks);
        for (var i = 0; i < blocks; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(options[(4 + 8 * i)..], _outOfOrder[2 * i]);
            BinaryPrimitives.WriteUInt32BigEndian(options[(8 + 8 * i)..], _outOfOrder[2 * i + 1]);
        }
        return 4 + 8 * blocks;
    }

    public void CopyPayload(uint seq, Span<byte> destination)
    {
        var mask = _sendRing.Length - 1;
        var index = (int)(seq & (uint)mask);
        var first = Math.Min(destination.Length, _sendRing.Length - index);
        _sendRing.AsSpan(index, first).CopyTo(destination);
        if (first < destination.Length) _sendRing.AsSpan(0, destination.Length - first).CopyTo(destination[first..]);
    }

    // ---- timers ----

    public void OnTimer(long now)
    {
        if (now >= _closeDeadline)
        {
            _closeDeadline = long.MaxValue;
            if (State is TcpState.TimeWait or TcpState.FinWait2)
            {
                Abort(sendReset: false);
                return;
            }
        }
        if (now >= _delayedAckDeadline)
        {
            _delayedAckDeadline = long.MaxValue;
            if (_unackedSegments > 0) SendAck();
        }
        if (now >= _persistDeadline)
        {
            // A window probe: an old sequence number makes the peer answer with its window (RFC 9293 §3.8.6.1 allows a
            // zero-length probe; Linux sends the same).
            _persistDeadline = long.MaxValue;
            if (_sndWnd == 0 && _sendTail != _sndNxt)
            {
                _stack.SendSegment(this, _sndUna - 1, TcpFlags.Ack, 0);
                _persistBackoff = Math.Min(_persistBackoff * 2, MaxRto);
                _persistDeadline = now + _persistBackoff;
                _stack.ScheduleTimer(_persistDeadline);
            }
        }
        if (now >= _rtoDeadline)
        {
            _rtoDeadline = long.MaxValue;
            OnRetransmissionTimeout(now);
        }
    }

    private void OnRetransmissionTimeout(long now)
    {
        if (State is TcpState.TimeWait or TcpState.Closed || (State is not (TcpState.SynSent or TcpState.SynReceived) && _sndUna == _sndMax)) return;
        Interlocked.Increment(ref _stack.Statistics.TimeoutsValue);
        _retries++;
        _rto = Math.Min(_rto * 2, MaxRto); // RFC 6298 §5.5
        _timing = false;
        switch (State)
        {
            case TcpState.SynSent:
                if (_retries > MaxSynRetries) Abort(sendReset: false, new SocketException((int)SocketError.TimedOut));
                else SendSyn(now);
                return;
            case TcpState.SynReceived:
                if (_retries > MaxSynAckRetries) Abort(sendReset: false);
                else SendSyn(now);
                return;
        }
        if (_retries > MaxRetries)
        {
            Abort(sendReset: true, new SocketException((int)SocketError.TimedOut));
            return;
        }
        // RFC 5681 §3.1 (4): one segment, half the flight as the threshold, resend from the first unacknowledged byte.
        _ssthresh = Math.Max((_sndMax - _sndUna) / 2, 2L * Mss);
        _cwnd = Mss;
        _inRecovery = false;
        _dupAcks = 0;
        _recover = _sndMax;
        _sackedCount = 0; // RFC 2018 §8: SACKed data may be reneged; forget it after a timeout
        _sndNxt = _sndUna;
        Interlocked.Increment(ref _stack.Statistics.RetransmitsValue);
        ResendFromUna(now);
    }

    private void ResendFromUna(long now)
    {
        var dataEnd = _finSent ? _finSeq : _sendTail;
        var length = (int)Math.Min((long)(int)(dataEnd - _sndUna), MaxPayload());
        if (length > 0)
        {
            _stack.SendSegment(this, _sndUna, TcpFlags.Ack, length);
            _sndNxt = _sndUna + (uint)length;
        }
        else if (_finSent)
        {
            _stack.SendSegment(this, _finSeq, TcpFlags.Fin | TcpFlags.Ack, 0);
            _sndNxt = _finSeq + 1;
        }
        _rtoDeadline = now + _rto;
        _stack.ScheduleTimer(_rtoDeadline);
    }

    // ---- the application's side (under the stack's lock) ----

    /// <summary>Copies what is readable; 0 at the end of the stream; -1 when the caller must wait (after arming).</summary>
    public int Read(Span<byte> destination, out ValueTask wait, CancellationToken cancellationToken)
    {
        wait = default;
        var readable = Readable;
        if (readable > 0 && _receiveRing.Length > 0)
        {
            var count = Math.Min(readable, destination.Length);
            var mask = _receiveRing.Length - 1;
            var index = (int)(_readSeq & (uint)mask);
            var first = Math.Min(count, _receiveRing.Length - index);
            _receiveRing.AsSpan(index, first).CopyTo(destination);
            if (first < count) _receiveRing.AsSpan(0, count - first).CopyTo(destination[first..]);
            var before = ReceiveWindow();
            _readSeq += (uint)count;
            // A window update when reading opened the window from (nearly) shut, or by a quarter of the buffer
            // (RFC 9293 §3.8.6.2.2, receiver-side silly window avoidance).
            var after = ReceiveWindow();
            var advertised = (int)(_lastAdvertisedRight - RcvNxt);
            if (State is TcpState.Established or TcpState.FinWait1 or TcpState.FinWait2
                && after - advertised >= Math.Min(_receiveCapacity / 4, 2 * Mss) && (advertised < _receiveCapacity / 2 || before < Mss))
                SendAck();
            return count;
        }
        if (_finReceived) return 0;
        if (_error is not null) throw new IOException(_error.Message, _error);
        if (destination.Length == 0) return 0;
        wait = _readable.Arm(cancellationToken);
        return -1;
    }

    /// <summary>Copies as much as the send ring takes and sends; -1 (after arming) when it took nothing and the caller must wait.</summary>
    public int Write(ReadOnlySpan<byte> source, out ValueTask wait, CancellationToken cancellationToken)
    {
        wait = default;
        if (_error is not null) throw new IOException(_error.Message, _error);
        if (_writesCompleted || State is not (TcpState.Established or TcpState.CloseWait))
            throw new IOException("the connection's sending side is closed");
        var free = _sendRing.Length - SendBuffered;
        if (free == 0)
        {
            wait = _writable.Arm(cancellationToken);
            return -1;
        }
        var count = Math.Min(free, source.Length);
        var mask = _sendRing.Length - 1;
        var index = (int)(_sendTail & (uint)mask);
        var first = Math.Min(count, _sendRing.Length - index);
        source[..first].CopyTo(_sendRing.AsSpan(index));
        if (first < count) source[first..count].CopyTo(_sendRing);
        _sendTail += (uint)count;
        _stack.BeginBurst();
        try
        {
            Output(_stack.NowMicroseconds());
        }
        finally
        {
            _stack.EndBurst();
        }
        return count;
    }

    /// <summary>Half-close: a FIN after the data written so far.</summary>
    public void CompleteWrites()
    {
        if (_writesCompleted || State is TcpState.Closed) return;
        _writesCompleted = true;
        Output(_stack.NowMicroseconds());
    }

    /// <summary>The application let go of the connection: a graceful close, or a reset when unread data would be lost (RFC 9293 §3.10.4 lets either happen; Linux resets).</summary>
    public void Release()
    {
        if (_released) return;
        if (Readable > 0 && State is not TcpState.Closed)
        {
            Abort(sendReset: true);
            return;
        }
        _released = true;
        CompleteWrites();
        if (State == TcpState.FinWait2) SetCloseDeadline(_stack.NowMicroseconds() + FinWait2Timeout);
    }

    /// <summary>Ends the connection at once: a reset to the peer if asked, waiters failed, the entry removed.</summary>
    public void Abort(bool sendReset, Exception? error = null)
    {
        if (State == TcpState.Closed) return;
        if (sendReset && State is not (TcpState.SynSent or TcpState.TimeWait))
            _stack.SendReset(PeerMac, Local, Key.Remote, Key.LocalPort, Key.RemotePort, _sndNxt, RcvNxt, TcpFlags.Rst | TcpFlags.Ack);
        if (State == TcpState.SynReceived) _stack.LeftHalfOpen();
        var graceful = State is TcpState.TimeWait or TcpState.LastAck && error is null;
        State = TcpState.Closed;
        _rtoDeadline = _delayedAckDeadline = _persistDeadline = _closeDeadline = long.MaxValue;
        if (!graceful) _error = error ?? new SocketException((int)SocketError.ConnectionAborted);
        _connected.Fail(_error ?? new SocketException((int)SocketError.ConnectionAborted));
        if (_error is not null)
        {
            _readable.Fail(new IOException(_error.Message, _error));
            _writable.Fail(new IOException(_error.Message, _error));
        }
        else
        {
            _readable.Set();
            _writable.Set();
        }
        _stack.Remove(this);
    }

    public override string ToString() =>
        $"{State} una={_sndUna - _iss} nxt={_sndNxt - _iss} max={_sndMax - _iss} tail={_sendTail - _iss} wnd={_sndWnd} cwnd={_cwnd} ssthresh={_ssthresh} " +
        $"rec={_inRecovery} dup={_dupAcks} sacked={_sackedCount} rto={_rto} rtoAt={_rtoDeadline} persistAt={_persistDeadline} retries={_retries} " +
        $"rcvNxt={RcvNxt - _irs} read={_readSeq - _irs} ooo={_outOfOrderCount} fin={_finReceived} finSent={_finSent}";

    public System.Net.IPEndPoint RemoteEndPoint => new(Ip.Addresses.ToIPAddress(Key.Remote), Key.RemotePort);

    public System.Net.IPEndPoint LocalEndPoint => new(Ip.Addresses.ToIPAddress(Local), Key.LocalPort);
}
