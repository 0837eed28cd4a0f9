package dev.ravit.core;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;

/**
 * Where the converter's files live: Android assets in the app, a folder in tests and on a
 * desktop ({@link #directory}). Names are relative, e.g. {@code manifest.json}.
 */
public interface AssetSource {
    /** Whether {@code name} exists. */
    boolean exists(String name);

    /** Opens {@code name} for reading; the caller closes the stream. */
    InputStream open(String name) throws IOException;

    /** How to name {@code name} in a message (a full path where there is one). */
    default String describe(String name) {
        return name;
    }

    /** Size in bytes (reads the stream unless the source knows better). */
    default long size(String name) throws IOException {
        long n = 0;
        byte[] buffer = new byte[64 * 1024];
        try (InputStream in = open(name)) {
            for (int r; (r = in.read(buffer)) != -1; ) {
                n += r;
            }
        }
        return n;
    }

    /** The whole file. */
    default byte[] readBytes(String name) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buffer = new byte[64 * 1024];
        try (InputStream in = open(name)) {
            for (int r; (r = in.read(buffer)) != -1; ) {
                out.write(buffer, 0, r);
            }
        }
        return out.toByteArray();
    }

    /** Files in a folder of the file system. */
    static AssetSource directory(Path folder) {
        return new DirectoryAssetSource(folder);
    }
}
