package dev.ravit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import org.junit.Test;

public class TensorDataTest {
    @Test
    public void uint8IsReadUnsigned() {
        TensorData t = TensorData.uint8(new int[] {1, 3}, new byte[] {0, (byte) 200, (byte) 255});
        assertArrayEquals(new int[] {0, 200, 255}, t.toIntArray());
        assertEquals(200.0, t.getDouble(1), 0);
    }

    @Test
    public void ofIntsChecksTheRange() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TensorData.ofInts(DType.INT8, new int[] {2}, new int[] {0, 128}));
        assertTrue(e.getMessage(), e.getMessage().contains("128") && e.getMessage().contains("int8"));
        assertThrows(IllegalArgumentException.class, () -> TensorData.ofInts(DType.UINT8, new int[] {1}, new int[] {-1}));
    }

    @Test
    public void shapeMustMatchTheValues() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TensorData.int8(new int[] {1, 4}, new byte[3]));
        assertTrue(e.getMessage(), e.getMessage().contains("needs 4 values, got 3"));
    }

    @Test
    public void byteBufferRoundTripsEveryDtype() {
        int[] shape = {1, 3};
        TensorData[] tensors = {
            TensorData.ofInts(DType.INT8, shape, new int[] {-128, 0, 127}),
            TensorData.ofInts(DType.UINT8, shape, new int[] {0, 128, 255}),
            TensorData.ofInts(DType.INT16, shape, new int[] {-32768, 1, 32767}),
            TensorData.float32(shape, new float[] {-1.5f, 0f, 3.25f}),
        };
        for (TensorData t : tensors) {
            ByteBuffer b = t.toByteBuffer();
            assertEquals(ByteOrder.nativeOrder(), b.order());
            assertEquals(t.byteSize(), b.capacity());
            assertEquals(t, TensorData.fromByteBuffer(t.dtype(), shape, b));
        }
    }

    @Test
    public void fromByteBufferChecksTheSize() {
        ByteBuffer b = ByteBuffer.allocateDirect(7).order(ByteOrder.nativeOrder());
        assertThrows(IllegalArgumentException.class, () -> TensorData.fromByteBuffer(DType.FLOAT32, new int[] {2}, b));
    }

    @Test
    public void isImmutable() {
        byte[] raw = {1, 2};
        TensorData t = TensorData.int8(new int[] {2}, raw);
        raw[0] = 9;
        assertEquals(1, t.getInt(0));
        t.rawBytes()[1] = 9;
        assertEquals(2, t.getInt(1));
    }

    @Test
    public void equalityCoversDtypeShapeAndValues() {
        TensorData a = TensorData.ofInts(DType.INT8, new int[] {1, 2}, new int[] {1, 2});
        assertEquals(a, TensorData.ofInts(DType.INT8, new int[] {1, 2}, new int[] {1, 2}));
        assertEquals(a.hashCode(), TensorData.ofInts(DType.INT8, new int[] {1, 2}, new int[] {1, 2}).hashCode());
        assertNotEquals(a, TensorData.ofInts(DType.UINT8, new int[] {1, 2}, new int[] {1, 2}));
        assertNotEquals(a, TensorData.ofInts(DType.INT8, new int[] {2}, new int[] {1, 2}));
        assertNotEquals(a, a.reshape(2, 1));
    }

    @Test
    public void dtypeNamesAreTheManifestOnes() {
        for (DType t : DType.values()) {
            assertEquals(t, DType.fromManifestName(t.manifestName()));
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> DType.fromManifestName("int4"));
        assertTrue(e.getMessage().contains("int4"));
        assertThrows(UnsupportedOperationException.class, DType.FLOAT32::min);
    }
}
