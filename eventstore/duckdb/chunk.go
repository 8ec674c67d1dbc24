package duckdb

import (
	"context"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"sync"
	"time"
	"unsafe"

	duckdbdriver "github.com/duckdb/duckdb-go/v2"
	"github.com/duckdb/duckdb-go/v2/mapping"
)

// Columnar appends. The driver's Appender takes a row of driver.Values
// and writes each cell through a type switch and, for every string and
// every NULL, a cgo call (measured: about 2.5 µs an event of the e2e
// load's shape, 24 columns). chunkWriter fills DuckDB data chunks itself,
// through the C API the driver exposes in its mapping package: fixed-width
// values and validity bits are stored straight into the vectors' memory,
// strings as DuckDB string_t values (inline up to 12 bytes, else a pointer
// into a pinned Go arena that lives until DuckDB has copied the chunk), so
// a chunk of 2,048 rows costs a few dozen cgo calls instead of tens of
// thousands. The chunks go to a DuckDB appender, whose
// duckdb_append_data_chunk copies them, strings included, before it
// returns.
//
// The driver keeps the C connection unexported in its Conn; connHandle
// reads it there after connLayout has checked, by reflection, that the
// field is where and what this code expects (the driver's version is
// pinned; TestConnLayout fails if an upgrade moves it).

// connLayout says whether duckdbdriver.Conn starts with the C connection.
var connLayout = func() bool {
	f, ok := reflect.TypeFor[duckdbdriver.Conn]().FieldByName("conn")
	return ok && f.Offset == 0 && f.Type == reflect.TypeFor[mapping.Connection]()
}()

// errConnLayout is returned when the driver's Conn does not have the
// expected layout (a driver upgrade).
var errConnLayout = errors.New("duckdb driver's connection layout is not the one this build knows")

// connHandle returns the C connection of dc.
func connHandle(dc driver.Conn) (mapping.Connection, error) {
	c, ok := dc.(*duckdbdriver.Conn)
	if !ok || !connLayout {
		return mapping.Connection{}, errConnLayout
	}
	h := *(*mapping.Connection)(unsafe.Pointer(c))
	if h.Ptr == nil {
		return mapping.Connection{}, errors.New("connection closed")
	}
	return h, nil
}

// colKind is how chunkWriter writes a column.
type colKind uint8

const (
	colVarchar colKind = iota
	colTimestampTZ
	colUBigint
	colUTinyint
)

var kindTypes = [...]mapping.Type{
	colVarchar:     mapping.TypeVarchar,
	colTimestampTZ: mapping.TypeTimestampTZ,
	colUBigint:     mapping.TypeUBigInt,
	colUTinyint:    mapping.TypeUTinyInt,
}

// chunkCol is one column of the chunk being filled.
type chunkCol struct {
	data  unsafe.Pointer // the vector's values
	valid []uint64       // the vector's validity mask
}

// chunkWriter appends rows to a table through data chunks it fills
// itself. Use: newChunkWriter, then for each row the set methods of its
// columns and endRow, then flush (or discard), then close.
type chunkWriter struct {
	conn  mapping.Connection
	app   mapping.Appender
	chunk mapping.DataChunk
	kinds []colKind
	cols  []chunkCol
	cap   int // rows a chunk holds
	row   int // the row being written
	arena *arena
}

// newChunkWriter opens an appender on table (in the connection's default
// catalog and schema) for columns, which must have the kinds given. arena
// is scratch space for long strings, reused across writers.
func newChunkWriter(dc driver.Conn, table string, columns []string, kinds []colKind, a *arena) (*chunkWriter, error) {
	conn, err := connHandle(dc)
	if err != nil {
		return nil, err
	}
	w := &chunkWriter{conn: conn, kinds: kinds, cols: make([]chunkCol, len(columns)), arena: a}
	if mapping.AppenderCreateExt(conn, "", "", table, &w.app) == mapping.StateError {
		err := errors.New(mapping.AppenderError(w.app))
		mapping.AppenderDestroy(&w.app)
		return nil, fmt.Errorf("create appender: %w", err)
	}
	for _, c := range columns {
		if mapping.AppenderAddColumn(w.app, c) == mapping.StateError {
			err := fmt.Errorf("appender column %s: %s", c, mapping.AppenderError(w.app))
			mapping.AppenderDestroy(&w.app)
			return nil, err
		}
	}
	if n := int(mapping.AppenderColumnCount(w.app)); n != len(columns) {
		mapping.AppenderDestroy(&w.app)
		return nil, fmt.Errorf("appender has %d columns, want %d", n, len(columns))
	}
	types := make([]mapping.LogicalType, len(columns))
	for i := range types {
		types[i] = mapping.AppenderColumnType(w.app, mapping.IdxT(i))
	}
	for i, t := range types {
		if id := mapping.GetTypeId(t); id != kindTypes[kinds[i]] {
			err = fmt.Errorf("column %s has type %d, want %d", columns[i], id, kindTypes[kinds[i]])
			break
		}
	}
	if err == nil {
		w.chunk = mapping.CreateDataChunk(types)
	}
	for i := range types {
		mapping.DestroyLogicalType(&types[i])
	}
	if err != nil {
		mapping.AppenderDestroy(&w.app)
		return nil, err
	}
	w.cap = int(mapping.VectorSize())
	w.resetChunk()
	return w, nil
}

// resetChunk empties the chunk and reads its vectors' addresses, all
// rows valid.
func (w *chunkWriter) resetChunk() {
	mapping.DataChunkReset(w.chunk)
	for i := range w.cols {
		v := mapping.DataChunkGetVector(w.chunk, mapping.IdxT(i))
		mapping.VectorEnsureValidityWritable(v)
		w.cols[i] = chunkCol{
			data:  mapping.VectorGetData(v),
			valid: unsafe.Slice((*uint64)(mapping.VectorGetValidity(v)), (w.cap+63)/64),
		}
		for j := range w.cols[i].valid {
			w.cols[i].valid[j] = math.MaxUint64
		}
	}
	w.row = 0
	w.arena.reset()
}

// endRow finishes the row being written, appending the chunk to the
// appender when it is full.
func (w *chunkWriter) endRow() error {
	w.row++
	if w.row < w.cap {
		return nil
	}
	return w.appendChunk()
}

// appendChunk hands the chunk's rows to the appender, which copies them.
func (w *chunkWriter) appendChunk() error {
	if w.row == 0 {
		return nil
	}
	mapping.DataChunkSetSize(w.chunk, mapping.IdxT(w.row))
	state := mapping.AppendDataChunk(w.app, w.chunk)
	w.resetChunk()
	if state == mapping.StateError {
		return errors.New(mapping.AppenderError(w.app))
	}
	return nil
}

// flush appends the rows written to the table, in the connection's open
// transaction. A cancellation of ctx interrupts it.
func (w *chunkWriter) flush(ctx context.Context) error {
	if err := w.appendChunk(); err != nil {
		return err
	}
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		mapping.Interrupt(w.conn)
		close(interrupted)
	})
	state := mapping.AppenderFlush(w.app)
	if !stop() {
		// The interrupt ran, or is running: wait for it, so that it
		// cannot reach a later statement on the connection unseen (the
		// caller fails the batch on ctx.Err() and drops the connection).
		<-interrupted
	}
	if state == mapping.StateError {
		return errors.Join(ctx.Err(), errors.New(mapping.AppenderError(w.app)))
	}
	return nil
}

// close releases the appender and chunk; rows not flushed are dropped.
func (w *chunkWriter) close() {
	mapping.AppenderClear(w.app)
	mapping.AppenderDestroy(&w.app)
	mapping.DestroyDataChunk(&w.chunk)
	w.arena.reset()
}

func (w *chunkWriter) null(col int) {
	w.cols[col].valid[w.row>>6] &^= 1 << (w.row & 63)
}

// str writes s, which must be valid UTF-8 (DuckDB does not check).
func (w *chunkWriter) str(col int, s string) {
	p := (*[16]byte)(unsafe.Add(w.cols[col].data, w.row*16))
	// DuckDB's string_t: the length, then up to 12 bytes inline
	// (zero-padded: DuckDB compares inline strings as two words), or
	// the first 4 bytes and a pointer to all of them.
	binary.LittleEndian.PutUint32(p[0:4], uint32(len(s)))
	if len(s) <= 12 {
		n := copy(p[4:], s)
		clear(p[4+n:])
		return
	}
	copy(p[4:8], s[:4])
	binary.LittleEndian.PutUint64(p[8:16], uint64(w.arena.copy(s)))
}

// optStr writes s, NULL for "".
func (w *chunkWriter) optStr(col int, s string) {
	if s == "" {
		w.nullStr(col)
		return
	}
	w.str(col, s)
}

// nullStr writes a NULL string (an empty string_t under a cleared bit).
func (w *chunkWriter) nullStr(col int) {
	*(*[16]byte)(unsafe.Add(w.cols[col].data, w.row*16)) = [16]byte{}
	w.null(col)
}

// The first second and the second after the last that the driver's own
// appender takes for a TIMESTAMPTZ (years -290307 to 294246).
var (
	minTSSec = time.Date(-290307, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	endTSSec = time.Date(294247, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
)

// ts writes t at microsecond precision (truncated, as the driver does).
func (w *chunkWriter) ts(col int, t time.Time) error {
	if sec := t.Unix(); sec < minTSSec || sec >= endTSSec {
		return fmt.Errorf("timestamp %v out of range", t)
	}
	*(*int64)(unsafe.Add(w.cols[col].data, w.row*8)) = t.UnixMicro()
	return nil
}

// optTS writes t, NULL for the zero time.
func (w *chunkWriter) optTS(col int, t time.Time) error {
	if t.IsZero() {
		*(*int64)(unsafe.Add(w.cols[col].data, w.row*8)) = 0
		w.null(col)
		return nil
	}
	return w.ts(col, t)
}

func (w *chunkWriter) u64(col int, v uint64) {
	*(*uint64)(unsafe.Add(w.cols[col].data, w.row*8)) = v
}

func (w *chunkWriter) u8(col int, v uint8) {
	*(*uint8)(unsafe.Add(w.cols[col].data, w.row)) = v
}

// arenas holds the arenas not in use.
var arenas = sync.Pool{New: func() any { return &arena{cur: -1} }}

// arena holds copies of the long strings of the chunk being filled, in
// pinned slabs (a chunk's vectors point into them) that are reused for
// the next chunk once DuckDB has copied this one.
type arena struct {
	slabs [][]byte
	cur   int // the slab being filled; -1 if none
	pin   runtime.Pinner
}

const slabSize = 1 << 20

// copy copies s into the arena and returns the copy's address.
func (a *arena) copy(s string) uintptr {
	if a.cur < 0 || cap(a.slabs[a.cur])-len(a.slabs[a.cur]) < len(s) {
		a.next(len(s))
	}
	b := a.slabs[a.cur]
	off := len(b)
	b = append(b, s...)
	a.slabs[a.cur] = b
	return uintptr(unsafe.Pointer(&b[off]))
}

// next moves to a slab with room for n bytes, pinning it.
func (a *arena) next(n int) {
	a.cur++
	for a.cur < len(a.slabs) && cap(a.slabs[a.cur]) < n {
		// Too small for a string this long: dropped.
		a.slabs = append(a.slabs[:a.cur], a.slabs[a.cur+1:]...)
	}
	if a.cur == len(a.slabs) {
		a.slabs = append(a.slabs, make([]byte, 0, max(slabSize, n)))
	}
	a.pin.Pin(unsafe.SliceData(a.slabs[a.cur]))
}

// reset unpins the slabs and empties them for reuse.
func (a *arena) reset() {
	a.pin.Unpin()
	for i := range a.slabs {
		a.slabs[i] = a.slabs[i][:0]
	}
	a.cur = -1
}
